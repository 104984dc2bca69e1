// The console in a real browser: headless Chromium (Debian's) driven by playwright-core, against
// `cafectl dashboard` on the playground. Run by tests/tests/console.rs, which starts the
// playground and the consoles and passes them here:
//
//   CAFE_NODE_MODULES  where playwright-core is installed (scripts/test.sh installs it)
//   CONSOLE_URL        a console with an admin's credentials
//   VIEWER_URL         a console with a viewer's credentials
//   METRICS_URL        the hub's /metrics
//   DEPLOYMENT         NAMESPACE/NAME, paused at group 0 of a release
//   OTHER_DEPLOYMENT   NAMESPACE/NAME of a second deployment, holding at PIPELINE's gate
//   PIPELINE           NAMESPACE/NAME of a ReleasePipeline of OTHER_DEPLOYMENT at its approval gate
//   BLUE_GREEN         NAMESPACE/NAME of a blue-green release whose group 0 preview waits for its
//                      switch (units BLUE_GREEN_UNITS, comma-separated)
//   EVACUATE_UNIT      the unit to evacuate
//   SCREENSHOTS        where to save the screenshots
//
// It prints one JSON line of what it saw; any failed expectation exits non-zero.

const assert = require("node:assert/strict");
const path = require("node:path");
const { chromium } = require(path.join(process.env.CAFE_NODE_MODULES, "playwright-core"));

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

const CONSOLE_URL = env("CONSOLE_URL");
const VIEWER_URL = env("VIEWER_URL");
const METRICS_URL = env("METRICS_URL");
const DEPLOYMENT = env("DEPLOYMENT");
const OTHER = env("OTHER_DEPLOYMENT");
const PIPELINE = env("PIPELINE");
const UNIT = env("EVACUATE_UNIT");
const BLUE_GREEN = env("BLUE_GREEN");
const BLUE_GREEN_UNITS = env("BLUE_GREEN_UNITS").split(",");
const SCREENSHOTS = env("SCREENSHOTS");
// Every wait is for a condition, with this deadline.
const DEADLINE = 120_000;

// The hub's Federation calls by method, and its open status watches.
async function hubLoad() {
  const text = await (await fetch(METRICS_URL)).text();
  const calls = {};
  let watches = null;
  for (const line of text.split("\n")) {
    const call = line.match(/^cafe_hub_api_calls_total\{method="(\w+)"\} (\d+)/);
    if (call) calls[call[1]] = Number(call[2]);
    const watch = line.match(/^cafe_hub_status_watches (\d+)/);
    if (watch) watches = Number(watch[1]);
  }
  return { calls, watches };
}

function callsSince(before, after) {
  const delta = {};
  for (const [method, n] of Object.entries(after.calls)) {
    const d = n - (before.calls[method] || 0);
    if (d !== 0) delta[method] = d;
  }
  return delta;
}

async function waitForHub(what, condition) {
  const deadline = Date.now() + DEADLINE;
  for (;;) {
    const load = await hubLoad();
    if (condition(load)) return load;
    if (Date.now() > deadline) throw new Error(`the hub never showed ${what}: ${JSON.stringify(load)}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const deploymentPage = (url) => `${url}#/deployments/${DEPLOYMENT}`;
const at = (phase, batch) => `#deployment[data-phase="${phase}"][data-batch="${batch}"]`;

// Clicks a command button and confirms it in the dialog.
async function command(page, verb) {
  await page.click(`button[data-action="${verb}"]`);
  await page.waitForSelector("dialog#confirm[open]");
  await page.fill("#confirm-reason", `console test: ${verb}`);
  await page.click("#confirm-ok");
}

async function main() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  const seen = {};
  try {
    const admin = await browser.newPage({ viewport: { width: 1360, height: 1000 } });
    admin.setDefaultTimeout(DEADLINE);
    const pageErrors = [];
    admin.on("pageerror", (error) => pageErrors.push(error.message));

    // The list: both deployments, the paused release highlighted as waiting for a human.
    await admin.goto(CONSOLE_URL);
    const row = `tr[data-deployment="${DEPLOYMENT}"]`;
    await admin.waitForSelector(`${row}.waiting`);
    const cells = await admin.$$eval(`${row} td`, (tds) => tds.map((td) => td.textContent.trim()));
    assert.equal(cells[1], "Paused", `the list's phase: ${cells}`);
    assert.match(cells[2], /^AwaitingConfirm/, `the list's reason: ${cells}`);
    assert.equal(cells[3], "1/3", `the list's group: ${cells}`);
    await admin.waitForSelector(`tr[data-deployment="${OTHER}"]:not(.waiting)`);
    // The filter narrows the list.
    await admin.fill("#filter", OTHER.split("/")[1]);
    await admin.waitForSelector(`${row}`, { state: "detached" });
    assert.equal(await admin.$$eval("tr[data-deployment]", (rows) => rows.length), 1);
    await admin.fill("#filter", "");
    await admin.waitForSelector(row);

    // One deployment, opened from the list, paused at group 0.
    await admin.click(`${row} a`);
    await admin.waitForSelector(at("Paused", 0));
    await admin.waitForSelector('tr.current[data-group="0"]');
    await admin.waitForSelector(".region .unit[data-unit]");
    await admin.waitForSelector("#history tbody tr");
    seen.regions = await admin.$$eval(".region", (regions) => regions.map((r) => r.dataset.region));
    await admin.screenshot({ path: path.join(SCREENSHOTS, "deployment-paused.png"), fullPage: true });

    // The page watches one stream per deployment listed, and holds no other call open.
    const before = await waitForHub("a watch per deployment shown", (load) => load.watches === 3);
    // Marks this document: a reload would lose it.
    await admin.evaluate(() => { window.cafeConsoleTest = "same page"; });

    // Continue, confirmed: group 1 runs and pauses, streamed to the page without a reload.
    await command(admin, "continue");
    await admin.waitForSelector('#notice:not(.error):has-text("Done")');
    await admin.waitForSelector(at("Progressing", 1));
    await admin.waitForSelector('tr.current[data-group="1"]');
    await admin.screenshot({ path: path.join(SCREENSHOTS, "deployment-progressing.png"), fullPage: true });
    await admin.waitForSelector(at("Paused", 1));
    assert.equal(await admin.evaluate(() => window.cafeConsoleTest), "same page", "the page was reloaded");
    const after = await hubLoad();
    seen.callsDuringGroup1 = callsSince(before, after);
    // The whole group, live, cost the hub one call: the Continue itself.
    assert.deepEqual(seen.callsDuringGroup1, { Continue: 1 }, "calls while group 1 ran");
    assert.equal(after.watches, 3, "status watches while group 1 ran");
    seen.watches = after.watches;

    // A viewer's Continue is refused with the hub's own message, and nothing moves.
    const viewer = await browser.newPage({ viewport: { width: 1360, height: 900 } });
    viewer.setDefaultTimeout(DEADLINE);
    await viewer.goto(deploymentPage(VIEWER_URL));
    await viewer.waitForSelector(at("Paused", 1));
    await command(viewer, "continue");
    const refusal = await viewer.waitForSelector("#notice.error");
    seen.viewerRefusal = (await refusal.textContent()).trim();
    assert.match(seen.viewerRefusal, /permission denied/);
    await viewer.waitForSelector(at("Paused", 1));
    await viewer.close();

    // A blue-green release: group 0's units show their preview ready, the others wait; Continue
    // switches them, live.
    await admin.goto(`${CONSOLE_URL}#/deployments/${BLUE_GREEN}`);
    await admin.waitForSelector('#deployment[data-phase="Paused"][data-batch="0"]');
    for (const unit of BLUE_GREEN_UNITS) {
      await admin.waitForSelector(`.unit[data-unit="${unit}"] .blue-green[data-state="PreviewReady"]`);
    }
    seen.blueGreenBefore = await admin.$$eval(".blue-green", (all) => all.map((b) => b.dataset.state).sort());
    await admin.screenshot({ path: path.join(SCREENSHOTS, "blue-green-preview.png"), fullPage: true });
    await command(admin, "continue");
    for (const unit of BLUE_GREEN_UNITS) {
      await admin.waitForSelector(`.unit[data-unit="${unit}"] .blue-green[data-state="Switched"]`);
      await admin.waitForSelector(`.unit[data-unit="${unit}"] .blue-green:has-text("old pods kept until")`);
    }
    await admin.screenshot({ path: path.join(SCREENSHOTS, "blue-green-switched.png"), fullPage: true });

    // The pipeline at its gate: approved from its page, it releases its last stage.
    await admin.goto(`${CONSOLE_URL}#/pipelines`);
    const card = `article[data-pipeline="${PIPELINE}"]`;
    await admin.waitForSelector(`${card}[data-phase="AwaitingApproval"] button[data-pipeline-action="approve"]`);
    await admin.waitForSelector(`${card} tr[data-stage="hangzhou"] td:has-text("Done")`);
    await admin.screenshot({ path: path.join(SCREENSHOTS, "pipeline-gate.png"), fullPage: true });
    await admin.click(`${card} button[data-pipeline-action="approve"]`);
    await admin.waitForSelector("dialog#confirm[open]");
    await admin.fill("#confirm-reason", "console test: approve");
    await admin.click("#confirm-ok");
    await admin.waitForSelector('#notice:not(.error):has-text("Done")');
    // Pipelines have no watch: the page fetches them again as the streamed releases move.
    await admin.waitForSelector(`${card}[data-phase="Succeeded"]`);
    seen.pipeline = await admin.$$eval(`${card} tbody tr`, (rows) => rows.map((r) => r.textContent));

    // An evacuation from the failover page shows the unit evacuated there and on the map.
    await admin.goto(`${CONSOLE_URL}#/failover`);
    await admin.waitForSelector("#evacuate-unit");
    await admin.fill("#evacuate-unit", UNIT);
    await admin.click("#evacuate");
    await admin.waitForSelector("dialog#confirm[open]");
    await admin.fill("#confirm-reason", "console test: evacuate");
    await admin.click("#confirm-ok");
    await admin.waitForSelector(`tr[data-unit="${UNIT}"][data-phase="Evacuated"]`);
    await admin.goto(deploymentPage(CONSOLE_URL));
    await admin.waitForSelector(`.unit[data-unit="${UNIT}"][data-evacuated="true"] .badge.evacuated`);
    await admin.screenshot({ path: path.join(SCREENSHOTS, "deployment-evacuated.png"), fullPage: true });

    // The audit log names the console's commands.
    await admin.goto(`${CONSOLE_URL}#/audit`);
    await admin.waitForSelector('td:has-text("console test: evacuate")');
    seen.audit = await admin.$$eval("tbody tr", (rows) => rows.slice(0, 3).map((r) => r.textContent));

    // The clusters and their heartbeats.
    await admin.goto(`${CONSOLE_URL}#/clusters`);
    await admin.waitForSelector("tr[data-cluster]");
    seen.clusters = await admin.$$eval("tr[data-cluster]", (rows) => rows.map((r) => r.dataset.cluster));
    assert.deepEqual(pageErrors, [], "errors in the page");
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(seen));
}

main().catch((error) => {
  console.error(error.stack || String(error));
  process.exit(1);
});
