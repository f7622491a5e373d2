import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { ValidationError } from '@kb-labs/plugin-execution-core';
import { processShared } from '@kb-labs/plugin-execution-core/host-kit';
import { isUnder, matchRoute, splitTarget, type Route } from './route.js';

/** The part of an http/https server the router uses. */
export interface UpgradeServer {
  on(event: 'upgrade', listener: UpgradeListener): unknown;
  off(event: 'upgrade', listener: UpgradeListener): unknown;
  listenerCount(event: 'upgrade'): number;
}

type UpgradeListener = (request: IncomingMessage, socket: Duplex, head: Buffer) => void;

/** What the router asks of each mount on its server. */
export interface UpgradeTarget {
  readonly basePath: string;
  readonly routes: readonly Route[];
  /** Take the upgrade if a channel of this mount matches; false to let the router look further. */
  tryAccept(request: IncomingMessage, socket: Duplex, head: Buffer, pathname: string, search: string): boolean;
  /** The server has closed (optional: a mount of an older copy of this package has none). */
  serverClosed?(): void;
}

/**
 * The router of each server, one for the process: shared through a global symbol, so that mounts
 * made by both builds of this package (an ES host whose dependency `require()`s it) or by two
 * installs of it share one router too. Two routers would each answer an upgrade the other's
 * mount takes with 404 under a base path they share, and both take one their routes both match.
 */
const routers = processShared('upgrade-routers', () => new WeakMap<object, UpgradeRouter>());

/**
 * One 'upgrade' listener per server, shared by every mount on it, so that "no channel matches"
 * is decided once (404 under a mount's base path) and the listener goes when the last mount does.
 */
export class UpgradeRouter {
  readonly #server: UpgradeServer;
  readonly #targets: UpgradeTarget[] = [];
  readonly #listener: UpgradeListener = (request, socket, head) => this.#route(request, socket, head);
  /** A closed server takes no more upgrades: its mounts are told, and unmount (one listener per server, however many mounts). */
  readonly #closeListener = (): void => {
    for (const target of [...this.#targets]) target.serverClosed?.();
  };

  private constructor(server: UpgradeServer) {
    this.#server = server;
  }

  static attach(server: UpgradeServer, target: UpgradeTarget): UpgradeRouter {
    let router = routers.get(server);
    if (!router) {
      router = new UpgradeRouter(server);
      routers.set(server, router);
    }
    router.add(target);
    return router;
  }

  detach(target: UpgradeTarget): void {
    const index = this.#targets.indexOf(target);
    if (index !== -1) this.#targets.splice(index, 1);
    if (this.#targets.length === 0 && routers.get(this.#server) === this) {
      this.#server.off('upgrade', this.#listener);
      closeEvents(this.#server)?.off('close', this.#closeListener);
      routers.delete(this.#server);
    }
  }

  /** Another mount on the server (public: the router may be of another copy of this package than the mount). */
  add(target: UpgradeTarget): void {
    for (const other of this.#targets) {
      for (const route of target.routes) {
        const clash = other.routes.find((r) => r.shape === route.shape);
        if (clash) {
          throw new ValidationError(`Channel path ${route.pattern} is already mounted on this server (as ${clash.pattern})`, {
            details: { path: route.pattern, mounted: clash.pattern },
          });
        }
      }
    }
    this.#targets.push(target);
    if (this.#targets.length === 1) {
      this.#server.on('upgrade', this.#listener);
      closeEvents(this.#server)?.once('close', this.#closeListener);
    }
  }

  /**
   * The mount whose channel matches `pathname` with the fewest parameters: static paths win over
   * parameterised ones across mounts as within one (`/c/lobby` of one plugin over `/c/:room` of
   * another, whichever was mounted first); among equals, the mount made first.
   */
  #bestMatch(pathname: string): UpgradeTarget | undefined {
    let best: { target: UpgradeTarget; params: number } | undefined;
    for (const target of this.#targets) {
      for (const route of target.routes) {
        if ((best === undefined || route.paramCount < best.params) && matchRoute(route, pathname)) best = { target, params: route.paramCount };
      }
    }
    // A spelling of a path whose static segments are percent-encoded ("/rooms/lobb%79" where
    // "/rooms/lobby" is mounted) goes to no channel: not to the static one (matched as sent, as a
    // proxy's rule on the target sees it), nor to a parameterised one it shadows ("/rooms/:room"),
    // which would get the very value the static one owns, past that one's `auth` and mount.
    if (pathname.includes('%')) {
      for (const target of this.#targets) {
        for (const route of target.routes) {
          if ((best === undefined || route.paramCount < best.params) && matchRoute(route, pathname, true)) return undefined;
        }
      }
    }
    return best?.target;
  }

  #route(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    try {
      const { pathname, search } = splitTarget(request.url ?? '/');
      // "" is a target with no path (`*`, which only OPTIONS takes): no channel's, not the root's.
      const target = pathname === '' ? undefined : this.#bestMatch(pathname);
      if (target?.tryAccept(request, socket, head, pathname, search)) return;
      // Under a claimed prefix, or with nobody else listening, answering beats leaving the client hanging.
      if (this.#targets.some((t) => isUnder(t.basePath, pathname)) || this.#server.listenerCount('upgrade') <= 1) {
        rejectUpgrade(socket, 404);
      }
    } catch {
      rejectUpgrade(socket, 500);
    }
  }
}

/** The server's 'close' events: an http or https server's; none for a server of the host's own that has no once/off. */
function closeEvents(server: UpgradeServer): Pick<NodeJS.EventEmitter, 'once' | 'off'> | undefined {
  const emitter = server as Partial<Pick<NodeJS.EventEmitter, 'once' | 'off'>>;
  return typeof emitter.once === 'function' && typeof emitter.off === 'function' ? (emitter as Pick<NodeJS.EventEmitter, 'once' | 'off'>) : undefined;
}

/** Answer an upgrade request over plain HTTP (with `headers` of its own) and close the socket. */
export function rejectUpgrade(socket: Duplex, status: number, message?: string, headers: Record<string, string> = {}): void {
  if (socket.destroyed) return;
  // The client may reset the connection while we answer; that must not become an uncaught error.
  socket.on('error', () => socket.destroy());
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  // node:http is loaded by then (the request came through a server); not at import (issue 15).
  const text = process.getBuiltinModule('node:http').STATUS_CODES[status] ?? 'Error';
  const body = message ?? text;
  socket.once('finish', () => socket.destroy());
  socket.end(
    `HTTP/1.1 ${status} ${text}\r\n${Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join('')}Connection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
  );
}
