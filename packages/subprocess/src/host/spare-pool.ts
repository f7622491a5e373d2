import { realpathSync, statSync } from 'node:fs';
import { monotonicNow, type DispatchControl } from '@kb-labs/plugin-execution-core/backend-kit';
import type { ChildRunner } from './child-runner.js';
import { profileKey, type ChildProfile } from './permission-flags.js';
import { dependencyFolders, packageScopeFile } from './runtime-paths.js';

/** Spares that die before they serve anything, in a row, before prespawning is switched off. */
const MAX_SPARE_FAILURES = 3;

/**
 * How long prespawning stays switched off before a child that starts gives it another try: spares
 * that died of a passing shortage (a pids limit reached, memory) would otherwise stay off for the
 * host's life, and one that keeps dying costs a spare per this long.
 */
export const SPARES_RETRY_AFTER_MS = 5_000;

/**
 * Warm spares: children booted with the runtime loaded and no plugin code, waiting for their
 * one `run`. A child's Node flags (which folders it may read and write, its heap limit) are
 * fixed at spawn, so a spare is made for a *profile* and only serves tasks of that profile.
 * The `size` spares go to the most recently used profiles, refilled in the background each
 * time one is used.
 *
 * A spare's view of the plugin is fixed at boot too: its sandbox binds the folders the paths led
 * to then (the plugin folder, the node_modules folders above it, the package.json that decides
 * its module type), and its Node flags name their real paths. A release switched since (a
 * `current` link re-pointed, a new folder renamed over the old one, `npm ci` making node_modules
 * anew) puts other folders at the same paths, so each spare keeps their identity from its boot
 * (viewIdentity) and is only taken while the paths still lead there; one that no longer matches
 * is discarded. So with the workspace root, its grant: a root removed behind the host's back (a
 * tmp cleaner) is made anew by the next lease, which a spare bound to the old one cannot see.
 */
export class SparePool {
  readonly #size: number;
  readonly #spawn: (profile: ChildProfile) => ChildRunner;
  readonly #spares = new Map<string, Spare[]>();
  /**
   * Most recently used profiles first, at most `size` of them, with the plugins that used each: a
   * profile names a folder, and plugins registered from one folder (a `{ root, manifest }` each)
   * share its spares, which no plugin code has touched.
   */
  #recent: Array<{ key: string; profile: ChildProfile; pluginIds: Set<string> }> = [];
  #failuresInARow = 0;
  /** When prespawning was last switched off (monotonicNow). */
  #switchedOffAt = 0;
  #closed = false;
  #spawned = 0;
  #used = 0;
  #discarded = 0;

  constructor(size: number, spawn: (profile: ChildProfile) => ChildRunner) {
    this.#size = size;
    this.#spawn = spawn;
  }

  get enabled(): boolean {
    return this.#size > 0 && !this.#closed && this.#failuresInARow < MAX_SPARE_FAILURES;
  }

  /** Why prespawning stopped, if it did. */
  get problem(): string | undefined {
    return this.#failuresInARow >= MAX_SPARE_FAILURES
      ? `prespawn switched off: ${MAX_SPARE_FAILURES} spare children in a row died before serving an execution`
      : undefined;
  }

  /** Take a spare for this profile (booted, or still booting) that sees the folders the plugin's paths lead to now, or undefined. */
  take(profile: ChildProfile): ChildRunner | undefined {
    const list = this.#spares.get(profileKey(profile));
    if (!list) return undefined;
    const view = viewIdentity(profile);
    // Prefer one that has finished booting.
    list.sort((a, b) => Number(b.runner.handshaken) - Number(a.runner.handshaken));
    while (list.length > 0) {
      const { runner, view: bootedWith } = list.shift()!;
      // Ended before the pool heard (its `ended` waits for its pipes): counted here, out of the list.
      if (!runner.available) {
        this.diedBeforeServing();
        continue;
      }
      if (view !== undefined && bootedWith === view) {
        this.#used++;
        return runner;
      }
      // Booted before the plugin's folders were replaced: it would run the old release.
      this.#discarded++;
      runner.kill();
    }
    return undefined;
  }

  /** Note that `profile` is in use by plugin `pluginId` and refill: the spares follow the most recently used profiles. */
  touch(profile: ChildProfile, pluginId: string): void {
    if (!this.enabled) return;
    const key = profileKey(profile);
    const pluginIds = this.#recent.find((r) => r.key === key)?.pluginIds ?? new Set<string>();
    pluginIds.add(pluginId);
    this.#recent = [{ key, profile, pluginIds }, ...this.#recent.filter((r) => r.key !== key)].slice(0, this.#size);
    this.#fill();
  }

  /**
   * Plugin `pluginId`, at `pluginRoot`, is gone (unregistered), or its handlers now have only the
   * profiles `kept` (reloaded): the spares of its folder's other profiles that no other plugin of
   * that folder used are killed, and the others take their share.
   */
  forget(pluginId: string, pluginRoot: string, kept?: ReadonlySet<string>): void {
    for (const r of this.#recent) if (r.profile.pluginRoot === pluginRoot && !kept?.has(r.key)) r.pluginIds.delete(pluginId);
    this.#recent = this.#recent.filter((r) => r.pluginIds.size > 0);
    for (const [key, list] of this.#spares) {
      if (list[0]?.pluginRoot !== pluginRoot || this.#recent.some((r) => r.key === key)) continue;
      this.#spares.delete(key);
      for (const { runner } of list) {
        if (runner.available) this.#discarded++;
        runner.kill();
      }
    }
    this.#fill();
  }

  /**
   * Whether a spare taken for an execution said it is ready (false: it ended first, a spare that
   * died before serving, out of the list since its take), or false once that execution is
   * stopped, whichever comes first.
   */
  bootedOrStopped(spare: ChildRunner, control: DispatchControl): Promise<boolean> {
    return new Promise((resolve) => {
      const unsubscribe = control.onStop(() => resolve(false));
      void spare.ready.then((ready) => {
        unsubscribe();
        if (!ready && !control.stopReason) this.diedBeforeServing();
        resolve(ready);
      });
    });
  }

  /** A spare ended before it served anything: idle, or taken by an execution that waited for its boot. */
  diedBeforeServing(): void {
    if (++this.#failuresInARow === MAX_SPARE_FAILURES) this.#switchedOffAt = monotonicNow();
  }

  /** A spare served its execution: the ones that boot keep working. */
  served(): void {
    this.#failuresInARow = 0;
  }

  /**
   * A cold child started: children start again. Switched off a while ago, prespawning gets one
   * more try: the next execution refills a spare, and that one's death switches it off again.
   */
  childStarted(): void {
    if (this.#failuresInARow < MAX_SPARE_FAILURES || monotonicNow() - this.#switchedOffAt < SPARES_RETRY_AFTER_MS) return;
    this.#failuresInARow = MAX_SPARE_FAILURES - 1;
  }

  counts(): { ready: number; booting: number; spawned: number; used: number; discarded: number } {
    let ready = 0;
    let booting = 0;
    for (const list of this.#spares.values()) {
      for (const { runner: spare } of list) {
        if (!spare.available) continue;
        if (spare.handshaken) ready++;
        else booting++;
      }
    }
    return { ready, booting, spawned: this.#spawned, used: this.#used, discarded: this.#discarded };
  }

  /** Kill every spare; no more are made. Resolves when they are gone. */
  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#spares.values()].flat().map((spare) => spare.runner);
    this.#spares.clear();
    for (const spare of all) spare.kill();
    await Promise.all(all.map((spare) => spare.ended));
  }

  #fill(): void {
    if (!this.enabled) return;
    // How many each recent profile should have: round-robin over them, most recent first.
    const want = new Map<string, number>();
    for (let i = 0; i < this.#size && this.#recent.length > 0; i++) {
      const { key } = this.#recent[i % this.#recent.length]!;
      want.set(key, (want.get(key) ?? 0) + 1);
    }
    for (const [key, list] of this.#spares) {
      const alive = list.filter((s) => s.runner.available);
      const keep = want.get(key) ?? 0;
      for (const extra of alive.splice(keep)) {
        this.#discarded++;
        extra.runner.kill();
      }
      if (alive.length === 0) this.#spares.delete(key);
      else this.#spares.set(key, alive);
    }
    for (const { key, profile } of this.#recent) {
      const list = this.#spares.get(key) ?? [];
      try {
        while (list.length < (want.get(key) ?? 0)) list.push(this.#boot(profile));
      } catch {
        // This profile cannot be spawned at all (the execution itself reports why): no spares
        // for it, and the others are not its concern.
        this.#recent = this.#recent.filter((r) => r.key !== key);
      }
      if (list.length > 0) this.#spares.set(key, list);
    }
  }

  #boot(profile: ChildProfile): Spare {
    // Before the spawn: a folder replaced while the spare boots is caught at its take.
    const view = viewIdentity(profile);
    const runner = this.#spawn(profile);
    const spare = { runner, view, pluginRoot: profile.pluginRoot };
    this.#spawned++;
    void runner.ended.then(() => {
      if (this.#closed) return;
      const key = profileKey(profile);
      const list = this.#spares.get(key);
      const index = list?.indexOf(spare) ?? -1;
      if (index < 0) return;
      // Died while waiting: not something the next execution should inherit.
      list!.splice(index, 1);
      this.diedBeforeServing();
      this.#fill();
    });
    return spare;
  }
}

interface Spare {
  readonly runner: ChildRunner;
  readonly pluginRoot: string;
  /** viewIdentity of its profile when it booted. */
  readonly view: string | undefined;
}

/**
 * What the profile's paths lead to now: the real path and inode of its plugin's folder, of the
 * node_modules folders above it, of its package scope file and of its workspace grant (a spare's:
 * the workspace root); undefined if one is gone.
 */
function viewIdentity({ pluginRoot, workspaceGrant }: ChildProfile): string | undefined {
  try {
    const paths = [pluginRoot, ...dependencyFolders(pluginRoot), ...packageScopeFile(pluginRoot), ...(workspaceGrant ? [workspaceGrant] : [])];
    return paths.map(identityOf).join('|');
  } catch {
    return undefined;
  }
}

function identityOf(p: string): string {
  const real = realpathSync.native(p);
  const { dev, ino } = statSync(real);
  return `${dev}:${ino}:${real}`;
}
