/**
 * A lean client for the Jupyter Server REST API (contents, kernels,
 * sessions, kernelspecs).  Browser sessions are cookie-authenticated, so
 * every write carries the `_xsrf` cookie back as `X-XSRFToken`.
 */

import { encodePath, url } from './config';

export class ApiError extends Error {
  constructor(
    public status: number,
    message: string,
  ) {
    super(message);
  }
}

export interface ContentsModel {
  name: string;
  path: string;
  type: 'notebook' | 'file' | 'directory';
  writable: boolean;
  created: string;
  last_modified: string;
  mimetype: string | null;
  format: string | null;
  content: any;
  size?: number | null;
  hash?: string | null;
  hash_algorithm?: string | null;
}

export interface KernelModel {
  id: string;
  name: string;
  execution_state?: string;
  last_activity?: string;
  connections?: number;
}

export interface SessionModel {
  id: string;
  path: string;
  name: string;
  type: string;
  kernel: KernelModel;
}

export interface KernelSpecs {
  default: string;
  kernelspecs: Record<string, { name: string; spec: { display_name: string; language: string } }>;
}

/**
 * Hooks for the app: a 401 means the browser session ended (e.g. a
 * token-mode server restarted with a new signing key); the app shows a
 * "log in again" banner and hides it once requests succeed again.
 */
export const authEvents: { lost: () => void; ok: () => void } = { lost: () => {}, ok: () => {} };

function cookie(name: string): string | null {
  const m = document.cookie.match(new RegExp('(?:^|;\\s*)' + name + '=([^;]*)'));
  return m ? decodeURIComponent(m[1]) : null;
}

/** Fire a request to `path` below the base URL; JSON in and out. */
export async function request<T = any>(method: string, path: string, body?: unknown, query: Record<string, string> = {}): Promise<T> {
  const headers: Record<string, string> = {};
  const xsrf = cookie('_xsrf');
  if (xsrf && method !== 'GET') headers['X-XSRFToken'] = xsrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const qs = new URLSearchParams(query).toString();
  let resp: Response;
  try {
    resp = await fetch(url(path) + (qs ? `?${qs}` : ''), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, `Cannot reach the server (${(e as Error).message})`);
  }
  if (resp.status === 401) authEvents.lost();
  else if (resp.ok) authEvents.ok();
  if (resp.status === 204) return undefined as T;
  const text = await resp.text();
  let data: any = undefined;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!resp.ok) {
    const message = (data && (data.message || data.reason)) || resp.statusText || `HTTP ${resp.status}`;
    throw new ApiError(resp.status, message);
  }
  return data as T;
}

const contentsPath = (path: string) => `api/contents/${encodePath(path)}`;

export const contents = {
  get(path: string, opts: { content?: boolean; hash?: boolean; type?: string; format?: string } = {}): Promise<ContentsModel> {
    const q: Record<string, string> = { content: opts.content === false ? '0' : '1', hash: opts.hash ? '1' : '0' };
    if (opts.type) q.type = opts.type;
    if (opts.format) q.format = opts.format;
    return request('GET', contentsPath(path), undefined, q);
  },
  save(path: string, model: Partial<ContentsModel> & { chunk?: number }): Promise<ContentsModel> {
    return request('PUT', contentsPath(path), model);
  },
  newUntitled(dir: string, type: 'notebook' | 'file' | 'directory', ext?: string): Promise<ContentsModel> {
    return request('POST', contentsPath(dir), ext ? { type, ext } : { type });
  },
  rename(path: string, newPath: string): Promise<ContentsModel> {
    return request('PATCH', contentsPath(path), { path: newPath });
  },
  remove(path: string): Promise<void> {
    return request('DELETE', contentsPath(path));
  },
  copy(fromPath: string, toDir: string): Promise<ContentsModel> {
    return request('POST', contentsPath(toDir), { copy_from: fromPath });
  },
};

export const kernels = {
  interrupt: (id: string) => request('POST', `api/kernels/${id}/interrupt`, {}),
  restart: (id: string): Promise<KernelModel> => request('POST', `api/kernels/${id}/restart`, {}),
  get: (id: string): Promise<KernelModel> => request('GET', `api/kernels/${id}`),
};

export const sessions = {
  list: (): Promise<SessionModel[]> => request('GET', 'api/sessions'),
  /** The session for `path`: the existing one, or a new one (default kernelspec when no name). */
  create: (path: string, kernelName?: string): Promise<SessionModel> =>
    request('POST', 'api/sessions', { path, name: path.split('/').pop(), type: 'notebook', kernel: kernelName ? { name: kernelName } : {} }),
  update: (id: string, patch: Record<string, unknown>): Promise<SessionModel> => request('PATCH', `api/sessions/${id}`, patch),
  remove: (id: string): Promise<void> => request('DELETE', `api/sessions/${id}`),
};

export const kernelspecs = {
  list: (): Promise<KernelSpecs> => request('GET', 'api/kernelspecs'),
};

/** Bytes to base64 without building a giant intermediate string at once. */
export function toBase64(bytes: Uint8Array): string {
  let s = '';
  const step = 0x8000;
  for (let i = 0; i < bytes.length; i += step) s += String.fromCharCode(...bytes.subarray(i, i + step));
  return btoa(s);
}

export const UPLOAD_CHUNK = 1024 * 1024;

/**
 * Upload a file in chunks (Jupyter's `chunk` protocol: 1, 2, …, -1 for the
 * last) so big files neither block the page nor hit body-size limits.
 */
export async function upload(dir: string, file: File, progress: (fraction: number) => void): Promise<ContentsModel> {
  const path = dir ? `${dir}/${file.name}` : file.name;
  const total = file.size;
  if (total <= UPLOAD_CHUNK) {
    const bytes = new Uint8Array(await file.arrayBuffer());
    const model = await contents.save(path, { type: 'file', format: 'base64', name: file.name, path, content: toBase64(bytes) });
    progress(1);
    return model;
  }
  let model: ContentsModel | null = null;
  let chunk = 1;
  for (let offset = 0; offset < total; offset += UPLOAD_CHUNK, chunk++) {
    const end = Math.min(total, offset + UPLOAD_CHUNK);
    const bytes = new Uint8Array(await file.slice(offset, end).arrayBuffer());
    model = await contents.save(path, {
      type: 'file',
      format: 'base64',
      name: file.name,
      path,
      content: toBase64(bytes),
      chunk: end >= total ? -1 : chunk,
    });
    progress(end / total);
  }
  return model as ContentsModel;
}
