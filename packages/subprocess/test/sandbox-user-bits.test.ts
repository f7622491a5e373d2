import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { unusableBy } from '../src/host/sandbox-user.js';

let scratch: string;

describe('unusableBy, from the mode bits', () => {
  beforeAll(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'kb-sandbox-user-bits-'));
  });
  afterAll(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  it("reads the group's bits for a user of the path's group who does not own it, and others' bits for anyone else", async () => {
    const folder = path.join(scratch, 'group-only');
    await mkdir(folder);
    const file = path.join(folder, 'data.txt');
    await writeFile(file, 'x');
    // The group may pass and read; others may not.
    await chmod(scratch, 0o755);
    await chmod(folder, 0o750);
    await chmod(file, 0o640);
    const { uid, gid } = await stat(file);
    const member = { uid: uid + 1, gid };
    const stranger = { uid: uid + 1, gid: gid + 1 };
    expect(unusableBy(member, [[file, false]], new Set())).toBeUndefined();
    expect(unusableBy(member, [[file, true]], new Set())?.why).toBe(`${file} is not writable by uid ${member.uid}`);
    expect(unusableBy(stranger, [[file, false]], new Set())?.why).toBe(`${folder} does not let uid ${stranger.uid} pass`);
  });
});
