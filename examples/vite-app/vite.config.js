// Plain options (no import of 'vite'): the same file works wherever vite runs it from.
export default {
  // Relative asset URLs: the built app works from any folder of a static host.
  base: './',
  // The worker is an ES module (worker.js imports the wasm glue).
  worker: { format: 'es' },
  // In `vite dev`, serve webllama's files as they are: pre-bundling would move webllama.js away from
  // worker.js and the wasm, which it finds with new URL(..., import.meta.url).
  optimizeDeps: { exclude: ['webllama'] },
};
