/**
 * Jupyter widgets (ipywidgets), loaded only when a kernel uses them.
 *
 * The widget libraries (@jupyter-widgets/*, Backbone, Lumino) are several
 * times the size of the rest of the UI, so they live in a chunk of their own
 * that is imported when the first `comm_open` arrives.  Until it has loaded,
 * every incoming message is held and then replayed in order: an Output
 * widget's capture and a widget's display must see the messages that follow
 * its creation.
 */

import type { KernelConnection } from './kernel';
import { toast } from './dom';
import type { KernelMessage } from './wire';

/** What the lazily loaded manager offers (see widgets.ts). */
export interface WidgetManagerApi {
  handle(msg: KernelMessage): boolean;
  hasModel(modelId: string): boolean;
  display(modelId: string, el: HTMLElement): Promise<void>;
  restore(): Promise<void>;
  dispose(): void;
}

export const WIDGET_MIME = 'application/vnd.jupyter.widget-view+json';

export class WidgetHost {
  private manager: WidgetManagerApi | null = null;
  private loading: Promise<void> | null = null;
  private held: KernelMessage[] | null = null;
  private disposed = false;
  private failed = false;

  constructor(private kernel: KernelConnection) {
    kernel.interceptor = (msg) => this.intercept(msg);
  }

  /** True once the widget chunk is loaded (for tests and diagnostics). */
  get loaded(): boolean {
    return this.manager !== null;
  }

  private intercept(msg: KernelMessage): boolean {
    if (this.held) {
      this.held.push(msg);
      return true;
    }
    if (this.manager) return this.manager.handle(msg);
    if (this.failed) return false;
    if (msg.channel === 'iopub' && msg.header.msg_type === 'comm_open') {
      this.held = [msg];
      void this.load();
      return true;
    }
    return false;
  }

  load(): Promise<void> {
    if (!this.loading) {
      this.loading = import('./widgets')
        .then((mod) => {
          if (this.disposed) return;
          this.manager = new mod.WidgetManager(this.kernel);
        })
        .catch((e) => {
          this.failed = true;
          toast(`Widgets could not be loaded: ${(e as Error).message}`, 'error', 8000);
        })
        .finally(() => {
          const held = this.held ?? [];
          this.held = null;
          for (const m of held) if (!this.manager?.handle(m)) this.kernel.route(m);
        });
    }
    return this.loading;
  }

  /**
   * Recreate the widgets a running kernel already has (the page was
   * reloaded, or another tab made them); true when the manager is ready.
   */
  async restore(): Promise<boolean> {
    await this.load();
    if (!this.manager || this.disposed) return false;
    await this.manager.restore();
    return true;
  }

  /**
   * The element showing a widget output, or null when this kernel has no
   * such widget (a saved notebook: the caller shows the text fallback).
   */
  render(data: { model_id?: string }): HTMLElement | null {
    const id = data?.model_id;
    if (!id || !this.manager?.hasModel(id)) return null;
    const el = document.createElement('div');
    el.className = 'zh-widget';
    this.manager.display(id, el).catch((e) => {
      el.textContent = `Widget could not be shown: ${(e as Error).message}`;
    });
    return el;
  }

  dispose(): void {
    this.disposed = true;
    if (this.kernel.interceptor) this.kernel.interceptor = null;
    this.manager?.dispose();
    this.manager = null;
  }
}
