/** Build-time constants and asset imports (see build.mjs). */
declare const KATEX_CSS: string;
declare module '*.css';
