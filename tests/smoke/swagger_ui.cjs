// Drive the Swagger UI of the local server in Debian's headless Chromium (playwright-core):
//   node tests/smoke/swagger_ui.cjs <base url> <api key> <screenshot.png>
// Prints one JSON line: the operations listed, and the "Try it out" answer of GET /subscription/eligible.
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { chromium } = require("playwright-core");

async function main() {
  const [base, apiKey, screenshot] = process.argv.slice(2);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "chromium-profile-"));
  // A fresh profile per run: nothing cached or remembered from an earlier run.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
  });
  try {
    const page = await context.newPage();
    const external = [];
    page.on("request", (request) => {
      if (!request.url().startsWith(base) && !request.url().startsWith("data:")) {
        external.push(request.url());
      }
    });
    await page.goto(`${base}/docs`, { waitUntil: "load" });
    await page.waitForSelector(".opblock", { timeout: 30000 });
    const operations = await page.$$eval(".opblock", (blocks) =>
      blocks.map((block) => ({
        method: block.querySelector(".opblock-summary-method").textContent.trim(),
        // A deprecated operation's path carries its own class.
        path: block
          .querySelector(".opblock-summary-path, .opblock-summary-path__deprecated")
          .getAttribute("data-path"),
      })),
    );

    // Authorize with the billing key, as a person would, through the dialog.
    await page.click(".auth-wrapper .authorize");
    await page.fill(".modal-ux input", apiKey);
    await page.click(".modal-ux .modal-btn.authorize");
    await page.click(".modal-ux .btn-done");

    const block = page.locator(".opblock").filter({
      has: page.locator('.opblock-summary-path[data-path="/subscription/eligible"]'),
    });
    await block.locator(".opblock-summary").first().click();
    await block.locator(".try-out__btn").click();
    await block.locator(".execute").click();
    const status = block.locator(".live-responses-table tbody .response-col_status").first();
    await status.waitFor({ timeout: 30000 });
    const code = (await status.textContent()).trim();
    const body = (
      await block.locator(".live-responses-table tbody .response-col_description pre").first().textContent()
    ).trim();
    const requestUrl = (await block.locator(".request-url pre").first().textContent()).trim();
    // From the top of the page to the answer: every operation listed, and the call made.
    const bottom = await block
      .locator(".live-responses-table")
      .first()
      .evaluate((table) => table.getBoundingClientRect().bottom + window.scrollY);
    await page.screenshot({
      path: screenshot,
      fullPage: true,
      clip: { x: 0, y: 0, width: 1280, height: Math.ceil(bottom + 24) },
    });
    process.stdout.write(
      JSON.stringify({ operations, tryItOut: { status: code, body, requestUrl }, external }) + "\n",
    );
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((error) => {
  process.stderr.write(`${error.stack || error}\n`);
  process.exit(1);
});
