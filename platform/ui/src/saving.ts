/**
 * Saving without losing anyone's work.  Before each save the file's current
 * `hash` (or, on servers without hashes, `last_modified`) is compared with
 * the version this page loaded or last saved; if someone else changed the
 * file in between, the user chooses: overwrite, reload, or cancel.
 */

import { ApiError, contents, ContentsModel } from './api';
import { dialog, h, toast } from './dom';

export type SaveResult = 'saved' | 'cancelled' | 'reload' | 'failed';

export class SaveGuard {
  hash: string | null = null;
  lastModified: string | null = null;
  private saving: Promise<SaveResult> | null = null;

  constructor(public path: string) {}

  loaded(model: ContentsModel): void {
    this.hash = model.hash ?? null;
    this.lastModified = model.last_modified ?? null;
  }

  /** Whether the file on the server differs from the version we know. */
  async changedOnServer(): Promise<boolean> {
    let current: ContentsModel;
    try {
      current = await contents.get(this.path, { content: false, hash: true });
    } catch (e) {
      // Deleted or moved away: saving recreates it, nothing to lose.
      if (e instanceof ApiError && e.status === 404) return false;
      throw e;
    }
    if (this.hash && current.hash) return current.hash !== this.hash;
    if (this.lastModified && current.last_modified) return Date.parse(current.last_modified) > Date.parse(this.lastModified);
    return false;
  }

  async save(model: Partial<ContentsModel>, auto = false): Promise<SaveResult> {
    // One save at a time: a second Ctrl+S waits for the first.
    while (this.saving) await this.saving;
    this.saving = this.doSave(model, auto);
    try {
      return await this.saving;
    } finally {
      this.saving = null;
    }
  }

  private async doSave(model: Partial<ContentsModel>, auto: boolean): Promise<SaveResult> {
    try {
      if (await this.changedOnServer()) {
        if (auto) {
          // Autosave never decides for the user; tell them instead.
          toast('The file changed on disk; press Ctrl+S to choose what to keep.', 'error', 8000);
          return 'cancelled';
        }
        const choice = await dialog(
          'File changed on disk',
          h('p', {}, `"${this.path}" was changed since you opened it (by another tab, user or program). Overwrite it with your version, or reload theirs (your unsaved changes will be lost)?`),
          [
            { label: 'Cancel', value: 'cancel' },
            { label: 'Reload', value: 'reload' },
            { label: 'Overwrite', value: 'overwrite', primary: true, danger: true },
          ],
        );
        if (choice === 'reload') return 'reload';
        if (choice !== 'overwrite') return 'cancelled';
      }
      const saved = await contents.save(this.path, { ...model, path: this.path });
      this.lastModified = saved.last_modified ?? this.lastModified;
      if (saved.hash) this.hash = saved.hash;
      else {
        const fresh = await contents.get(this.path, { content: false, hash: true });
        this.hash = fresh.hash ?? null;
        this.lastModified = fresh.last_modified ?? this.lastModified;
      }
      return 'saved';
    } catch (e) {
      toast(`Save failed: ${(e as Error).message}. Your changes are still here.`, 'error', 8000);
      return 'failed';
    }
  }
}
