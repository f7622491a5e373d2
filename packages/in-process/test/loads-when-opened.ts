import { PluginRegistry, type PluginLoadFailure, type PluginSource } from '@kb-labs/plugin-execution-core';

/** A registry that loads its plugins once `open()` is called (a plugin folder on a file system that is slow to answer). */
export class LoadsWhenOpened extends PluginRegistry {
  #open!: () => void;
  readonly #opened = new Promise<void>((resolve) => (this.#open = resolve));
  #loaded!: () => void;
  /** Resolves once the plugins opened have been read. */
  readonly loaded = new Promise<void>((resolve) => (this.#loaded = resolve));
  open(): void {
    this.#open();
  }
  override async addEach(sources: readonly PluginSource[], indices?: readonly number[]): Promise<readonly PluginLoadFailure[]> {
    await this.#opened;
    const failures = await super.addEach(sources, indices);
    this.#loaded();
    return failures;
  }
}
