/**
 * Page configuration injected by the server into the app shell
 * (`<script id="zasper-config" type="application/json">`).
 */

export interface PageConfig {
  baseUrl: string;
  /** "token", "password" or "hub". */
  authMode: string;
  /** Absolute path that logs out, or "" when there is none. */
  logoutUrl: string;
  /** The hub's control panel, in hub mode. */
  hubControlUrl: string;
  /** Where files live, e.g. "local disk /home/me" or "s3://bucket/prefix". */
  storage: string;
  version: string;
}

let cached: PageConfig | null = null;

export function pageConfig(): PageConfig {
  if (cached) return cached;
  const el = document.getElementById('zasper-config');
  const raw = el?.textContent ? JSON.parse(el.textContent) : {};
  cached = {
    baseUrl: raw.baseUrl || '/',
    authMode: raw.authMode || 'token',
    logoutUrl: raw.logoutUrl || '',
    hubControlUrl: raw.hubControlUrl || '',
    storage: raw.storage || '',
    version: raw.version || '',
  };
  return cached;
}

/** Join URL path pieces below the base URL, encoding each path segment. */
export function url(...parts: string[]): string {
  const base = pageConfig().baseUrl.replace(/\/+$/, '');
  const rest = parts
    .filter((p) => p !== '')
    .map((p) => p.replace(/^\/+|\/+$/g, ''))
    .join('/');
  return `${base}/${rest}`;
}

/** Encode a contents path (keeping its slashes). */
export function encodePath(path: string): string {
  return path
    .split('/')
    .filter((s) => s !== '')
    .map(encodeURIComponent)
    .join('/');
}
