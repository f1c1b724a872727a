/**
 * The widget manager (lazy chunk): the official @jupyter-widgets base and
 * controls models and views, talking to the kernel over comms through our
 * own KernelConnection.
 *
 * - comm_open / comm_msg / comm_close on iopub create, update and close
 *   widget models; models send their changes back as comm_msg on shell;
 * - an Output widget captures the output of the request whose msg_id the
 *   kernel gives it (`with out:` and `interact`), so that output is shown in
 *   the widget instead of the cell;
 * - HTML widget values go through the same sanitizer as HTML outputs.
 */

import * as base from '@jupyter-widgets/base';
import { ManagerBase } from '@jupyter-widgets/base-manager';
import * as controls from '@jupyter-widgets/controls';
import * as outputBase from '@jupyter-widgets/output';
import { Widget } from '@lumino/widgets';
import type { KernelConnection } from './kernel';
import { uuid } from './kernel';
import { joinText, Output, renderOutput } from './render';
import { sanitize } from './sanitize';
import type { WidgetManagerApi } from './widgethost';
import type { KernelMessage } from './wire';

declare const WIDGETS_CSS: string;

let cssLoaded = false;
function loadCss(): void {
  if (cssLoaded || typeof document === 'undefined' || typeof WIDGETS_CSS === 'undefined' || !WIDGETS_CSS) return;
  cssLoaded = true;
  const link = document.createElement('link');
  link.rel = 'stylesheet';
  link.href = new URL(WIDGETS_CSS, import.meta.url).href;
  document.head.appendChild(link);
}

const OUTPUT_TYPES = new Set(['stream', 'display_data', 'execute_result', 'error', 'clear_output']);

/** A comm over our kernel connection, in the shape widget models expect. */
class Comm implements base.IClassicComm {
  private onMsg: ((msg: any) => void) | null = null;
  private onClose: ((msg: any) => void) | null = null;

  constructor(
    private kernel: KernelConnection,
    readonly comm_id: string,
    readonly target_name: string,
  ) {}

  private post(type: string, content: Record<string, unknown>, callbacks?: base.ICallbacks, metadata?: any, buffers?: (ArrayBuffer | ArrayBufferView)[]): string {
    const bufs = (buffers ?? []).map((b) => (b instanceof ArrayBuffer ? b : (b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer)));
    return this.kernel.send(
      'shell',
      type,
      content,
      {
        onIopub: (m) => {
          if (m.header.msg_type === 'status') callbacks?.iopub?.status?.(m as any);
          else callbacks?.iopub?.output?.(m as any);
        },
        onIdle: (m) => callbacks?.iopub?.status?.(m as any),
        onReply: (m) => callbacks?.shell?.reply?.(m as any),
      },
      { metadata: metadata ?? {}, buffers: bufs, noReply: true },
    );
  }

  open(data: any, callbacks?: base.ICallbacks, metadata?: any, buffers?: (ArrayBuffer | ArrayBufferView)[]): string {
    return this.post('comm_open', { comm_id: this.comm_id, target_name: this.target_name, data }, callbacks, metadata, buffers);
  }

  send(data: any, callbacks?: base.ICallbacks, metadata?: any, buffers?: (ArrayBuffer | ArrayBufferView)[]): string {
    return this.post('comm_msg', { comm_id: this.comm_id, data }, callbacks, metadata, buffers);
  }

  close(data?: any, callbacks?: base.ICallbacks, metadata?: any, buffers?: (ArrayBuffer | ArrayBufferView)[]): string {
    const id = this.post('comm_close', { comm_id: this.comm_id, data: data ?? {} }, callbacks, metadata, buffers);
    this.closed({ content: { comm_id: this.comm_id, data: data ?? {} } });
    return id;
  }

  on_msg(cb: (msg: any) => void): void {
    this.onMsg = cb;
  }

  on_close(cb: (msg: any) => void): void {
    this.onClose = cb;
  }

  received(msg: KernelMessage): void {
    this.onMsg?.(msg);
  }

  closed(msg: any): void {
    const cb = this.onClose;
    this.onClose = null;
    cb?.(msg);
  }
}

/** The Output widget's model: holds captured outputs in its `outputs` state. */
class OutputModel extends outputBase.OutputModel {
  private pendingClear = false;

  defaults(): any {
    return { ...super.defaults(), msg_id: '', outputs: [] };
  }

  initialize(attributes: any, options: any): void {
    super.initialize(attributes, options);
    this.on('change:msg_id', () => {
      const mgr = this.widget_manager as unknown as WidgetManager;
      mgr.setCapture(this.previous('msg_id'), this.get('msg_id'), this);
    });
    const id = this.get('msg_id');
    if (id) (this.widget_manager as unknown as WidgetManager).setCapture('', id, this);
  }

  /** An output message of the request being captured. */
  capture(msg: KernelMessage): void {
    const t = msg.header.msg_type;
    const c = msg.content;
    let outs: Output[] = this.pendingClear ? [] : [...(this.get('outputs') ?? [])];
    if (t === 'clear_output') {
      if (c.wait) {
        this.pendingClear = true;
        return;
      }
      outs = [];
    } else if (t === 'stream') {
      const last = outs[outs.length - 1];
      if (last && last.output_type === 'stream' && last.name === c.name) outs[outs.length - 1] = { ...last, text: joinText(last.text) + c.text };
      else outs.push({ output_type: 'stream', name: c.name, text: c.text });
    } else if (t === 'error') {
      outs.push({ output_type: 'error', ename: c.ename, evalue: c.evalue, traceback: c.traceback ?? [] });
    } else {
      const out: any = { output_type: t, data: c.data ?? {}, metadata: c.metadata ?? {} };
      if (t === 'execute_result') out.execution_count = c.execution_count ?? null;
      outs.push(out);
    }
    this.pendingClear = false;
    this.set('outputs', outs);
    // The kernel's Output.outputs follows what the front end shows.
    this.save_changes();
  }
}

class OutputView extends outputBase.OutputView {
  render(): void {
    super.render();
    this.el.classList.add('zh-widget-output');
    this.listenTo(this.model, 'change:outputs', () => this.paint());
    this.paint();
  }

  private paint(): void {
    const outs: Output[] = this.model.get('outputs') ?? [];
    this.el.replaceChildren(...outs.map((o) => renderOutput(o)));
  }
}

/** HTML widget values are untrusted markup, like HTML outputs. */
class HTMLView extends controls.HTMLView {
  update(): void {
    super.update();
    (this as any).content.innerHTML = sanitize(this.model.get('value') ?? '');
  }
}

class HTMLMathView extends controls.HTMLMathView {
  update(): void {
    super.update();
    (this as any).content.innerHTML = sanitize(this.model.get('value') ?? '');
  }
}

const MODULES: Record<string, Record<string, any>> = {
  '@jupyter-widgets/base': base,
  '@jupyter-widgets/controls': { ...controls, HTMLView, HTMLMathView },
  '@jupyter-widgets/output': { ...outputBase, OutputModel, OutputView },
};

export class WidgetManager extends ManagerBase implements WidgetManagerApi {
  private comms = new Map<string, Comm>();
  /** msg_id of a request → the Output widgets capturing its output (last one wins). */
  private captures = new Map<string, OutputModel[]>();
  private views = new Set<Widget>();

  constructor(private kernel: KernelConnection) {
    super();
    loadCss();
  }

  protected loadClass(className: string, moduleName: string, moduleVersion: string): Promise<any> {
    const cls = MODULES[moduleName]?.[className];
    if (!cls) return Promise.reject(new Error(`Widget class ${className} from ${moduleName}@${moduleVersion} is not available`));
    return Promise.resolve(cls);
  }

  protected async _create_comm(target: string, modelId?: string, data?: any, metadata?: any, buffers?: (ArrayBuffer | ArrayBufferView)[]): Promise<base.IClassicComm> {
    const comm = new Comm(this.kernel, modelId ?? uuid(), target);
    this.comms.set(comm.comm_id, comm);
    if (data !== undefined) comm.open(data, undefined, metadata, buffers);
    return comm;
  }

  protected async _get_comm_info(): Promise<Record<string, unknown>> {
    const reply = await this.kernel.request('shell', 'comm_info_request', { target_name: this.comm_target_name });
    return reply.content?.comms ?? {};
  }

  inline_sanitize(source: string): string {
    return sanitize(source);
  }

  setCapture(oldId: string, newId: string, model: OutputModel): void {
    if (oldId) {
      const list = (this.captures.get(oldId) ?? []).filter((m) => m !== model);
      if (list.length) this.captures.set(oldId, list);
      else this.captures.delete(oldId);
    }
    if (newId) this.captures.set(newId, [...(this.captures.get(newId) ?? []), model]);
  }

  /** Take the messages that are ours; false lets the notebook route it. */
  handle(msg: KernelMessage): boolean {
    if (msg.channel !== 'iopub') return false;
    const t = msg.header.msg_type;
    const c = msg.content ?? {};
    if (t === 'comm_open') {
      if (c.target_name !== this.comm_target_name) {
        // Nobody here listens on that target: tell the kernel, as Jupyter front ends do.
        new Comm(this.kernel, c.comm_id, c.target_name).close();
        return true;
      }
      const comm = new Comm(this.kernel, c.comm_id, c.target_name);
      this.comms.set(c.comm_id, comm);
      this.handle_comm_open(comm, msg as any).catch((e) => console.warn('Widget could not be created', e));
      return true;
    }
    if (t === 'comm_msg') {
      this.comms.get(c.comm_id)?.received(msg);
      return true;
    }
    if (t === 'comm_close') {
      const comm = this.comms.get(c.comm_id);
      this.comms.delete(c.comm_id);
      comm?.closed(msg);
      return true;
    }
    if (OUTPUT_TYPES.has(t)) {
      const parent = (msg.parent_header as any)?.msg_id as string | undefined;
      const list = parent ? this.captures.get(parent) : undefined;
      if (list?.length) {
        list[list.length - 1].capture(msg);
        return true;
      }
    }
    return false;
  }

  /** Fetch the kernel's widget states (the control comm) and recreate their models. */
  async restore(): Promise<void> {
    try {
      await this._loadFromKernel();
    } catch (e) {
      console.warn('Could not restore widgets from the kernel', e);
    }
  }

  hasModel(modelId: string): boolean {
    return this.has_model(modelId);
  }

  async display(modelId: string, el: HTMLElement): Promise<void> {
    const model = await this.get_model(modelId);
    const view = await this.create_view(model, {});
    const widget = (view as any).luminoWidget as Widget;
    this.views.add(widget);
    Widget.attach(widget, el);
    view.on('remove', () => this.views.delete(widget));
  }

  dispose(): void {
    for (const w of this.views) if (w.isAttached) Widget.detach(w);
    this.views.clear();
    this.captures.clear();
    // Leaving the page must not close the kernel's widgets (no clear_state,
    // which would send comm_close): a later visit could show them again.
    this.comms.clear();
  }
}
