// The page with the default model loaded through its Load button: what the API tests start from.
import { modelsDir, startServer, launch, openPage } from './harness.mjs';

// Starts `webllama serve`, Chromium and the page, loads the default model; close() ends all of it.
export async function loadedPage() {
  const server = await startServer(modelsDir());
  const context = await launch();
  const page = await openPage(context, server.url);
  await page.click('#load');
  await page.waitForFunction(() => document.querySelector('#model-status').dataset.state === 'ready', null, { timeout: 120000 });
  return { page, close: async () => { await context.close(); server.stop(); } };
}
