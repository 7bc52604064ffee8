/**
 * A real headless Chromium (Debian's `chromium`, or CHROMIUM_BIN) driven by playwright-core,
 * with the flags this machine's closed network needs (no background networking, no QUIC, no
 * component updates), and a page whose console errors and uncaught exceptions are collected.
 */
import { chromium, type Browser, type Page } from 'playwright-core';

export const CHROMIUM_BIN = process.env.CHROMIUM_BIN ?? '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM_BIN,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A new page; `errors` collects console errors and uncaught exceptions as they happen. */
export async function openPage(browser: Browser, viewport = { width: 1400, height: 1000 }): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport });
  const errors: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => errors.push(`exception: ${e.message}`));
  return { page, errors };
}
