/**
 * The wire frames of a channel, all JSON text. Documented in docs/channels.md; the names here are
 * the public vocabulary clients code against.
 */

/** A client's message id, echoed back as `replyTo`. */
export type FrameId = string | number;

/** What a client sends: `{ "id"?: string | number, "type"?: "message", "data"?: any }`. */
export interface ClientMessageFrame {
  id?: FrameId;
  type?: 'message';
  data?: unknown;
}

/** Sent once the connect handler accepted the connection. */
export interface ReadyFrame {
  type: 'ready';
  connectionId: string;
}

/** What the message handler returned. `replyTo` is the client's `id`, or null when it sent none. */
export interface ReplyFrame {
  type: 'reply';
  replyTo: FrameId | null;
  data: unknown;
}

/** A failed execution or a frame the server could not accept. The connection stays open. */
export interface ErrorFrame {
  type: 'error';
  /** An ExecutionError code: HANDLER_ERROR, TIMEOUT, QUEUE_FULL, VALIDATION_ERROR … */
  code: string;
  message: string;
  replyTo: FrameId | null;
}

/** A push from `ctx.channel.send/sendTo/broadcast` or from the host's ConnectionRegistry. */
export interface PushFrame {
  type: 'message';
  data: unknown;
}

export type ServerFrame = ReadyFrame | ReplyFrame | ErrorFrame | PushFrame;

const MAX_ID_LENGTH = 256;
const CLIENT_KEYS = new Set(['id', 'type', 'data']);

export type ParsedClientFrame =
  | { ok: true; id: FrameId | undefined; data: unknown }
  | { ok: false; message: string; replyTo: FrameId | null };

/**
 * Parse one client frame. Never throws: anything unacceptable comes back as a message for an
 * error frame, with the frame's id when one could be read, so the client can match it.
 */
export function parseClientFrame(raw: Buffer | ArrayBuffer | Buffer[], isBinary: boolean): ParsedClientFrame {
  return isBinary ? BINARY_FRAME : parseFrameText(frameText(raw));
}

/** What a binary frame gets: a channel speaks JSON text. */
export const BINARY_FRAME: Extract<ParsedClientFrame, { ok: false }> = Object.freeze({ ok: false, message: 'Binary frames are not accepted; send JSON text', replyTo: null });

/** A text frame's payload as a string. */
export function frameText(raw: Buffer | ArrayBuffer | Buffer[]): string {
  return Buffer.isBuffer(raw) ? raw.toString('utf8') : Array.isArray(raw) ? Buffer.concat(raw).toString('utf8') : Buffer.from(raw).toString('utf8');
}

/** Frames up to this size are parsed whole to find the id of one refused unread (QUEUE_FULL); larger ones only at their start. */
const ID_SEARCH_BYTES = 64 * 1024;
/** `{"id": …` at a frame's start; a string id's 256 characters may be written escaped (`\u0041`: six each). */
const LEADING_ID = /^\s*\{\s*"id"\s*:\s*("(?:[^"\\]|\\.){0,1536}"|-?\d{1,20}(?:\.\d{1,20})?(?:[eE][+-]?\d{1,3})?)\s*[,}]/;

/**
 * The id of a frame refused before it is read (its connection has `maxInFlight` messages
 * already), for the error frame's `replyTo`: parsing a large frame whole for it would cost what
 * refusing it saves, so one over 64 KiB gives its id only where it comes first (`{"id": …, …}`).
 */
export function idOfRefused(text: string): FrameId | null {
  if (text.length <= ID_SEARCH_BYTES) {
    const parsed = parseFrameText(text);
    return parsed.ok ? (parsed.id ?? null) : parsed.replyTo;
  }
  const leading = LEADING_ID.exec(text.slice(0, 1600));
  if (!leading) return null;
  try {
    const id: unknown = JSON.parse(leading[1]!);
    return idIsEchoable(id) && id !== undefined ? id : null;
  } catch {
    return null;
  }
}

const ID_PROBLEM = `Frame "id" must be a string of at most ${MAX_ID_LENGTH} characters or a number of at most 2^53 - 1 either side of 0 (a JSON integer past that comes back rounded; send such an id as a string)`;

/**
 * An id the reply can carry back as the client wrote it: a string, or a number within 2^53 - 1 of
 * 0. Past that, an integer (a Python or Go int, a BigInt written out) is rounded by JSON.parse, and
 * `replyTo` would name no message the client sent. Fractions stay allowed (a `Math.random()` id
 * comes back as sent).
 */
function idIsEchoable(id: unknown): id is FrameId | undefined {
  if (typeof id === 'number') return Math.abs(id) <= Number.MAX_SAFE_INTEGER;
  return id === undefined || (typeof id === 'string' && id.length <= MAX_ID_LENGTH);
}

/** Parse one client frame's text (parseClientFrame). */
export function parseFrameText(text: string): ParsedClientFrame {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    return { ok: false, message: `Frame is not valid JSON: ${(error as Error).message}`, replyTo: null };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { ok: false, message: 'Frame must be a JSON object { id?, type?: "message", data }', replyTo: null };
  }
  const frame = value as Record<string, unknown>;
  const id = frame.id;
  if (!idIsEchoable(id)) return { ok: false, message: ID_PROBLEM, replyTo: null };
  const replyTo = (id as FrameId | undefined) ?? null;
  if (frame.type !== undefined && frame.type !== 'message') {
    return { ok: false, message: `Unknown frame type ${JSON.stringify(frame.type)}; the only client frame type is "message"`, replyTo };
  }
  let unknown: string[] | undefined;
  for (const key in frame) {
    // Own fields only: a key a library added to the host's Object.prototype is no field of the client's.
    if (!CLIENT_KEYS.has(key) && Object.hasOwn(frame, key)) (unknown ??= []).push(key);
  }
  if (unknown) {
    return { ok: false, message: `Unknown frame field(s): ${unknown.slice(0, 5).join(', ')}; a frame is { id?, type?, data }`, replyTo };
  }
  return { ok: true, id: id as FrameId | undefined, data: frame.data };
}

/** JSON text of a server frame, or undefined when the payload is not JSON-serialisable (BigInt, cycles). */
export function encodeFrame(frame: ServerFrame): string | undefined {
  try {
    return JSON.stringify(frame);
  } catch {
    return undefined;
  }
}

/** A client's message as its handler's execution takes it: the frame's id and data. */
export interface QueuedMessage {
  id: FrameId | undefined;
  data: unknown;
}

/**
 * A message waiting for its turn: its frame's text, read again when it runs. Parsed, a frame of
 * small objects holds some twenty times its size on the heap; `maxInFlight` × `maxPayload`
 * bounds what a client can make the host hold only while messages wait as text.
 */
export interface WaitingMessage {
  id: FrameId | undefined;
  text: string;
}
