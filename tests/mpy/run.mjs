#!/usr/bin/env node
// Runs the portable core under real MicroPython: the official WebAssembly port
// (@micropython/micropython-webassembly-pyscript, pinned in tests/mpy/portable.json) in Node.js.
//
//   node tests/mpy/run.mjs test [tests/portable/test_x.py ...]   run portable test modules
//   node tests/mpy/run.mjs import [agent/core/x.py|module ...]   import modules, report live heap
//   node tests/mpy/run.mjs heap                                  core loop heap after a poll cycle
//
// With no file, every file named by tests/mpy/portable.json is used. Each file gets a fresh
// interpreter (a child process of this script), so figures and failures do not leak between them.
// Exit status: 0 all passed and within budget, 1 a failure or a budget exceeded, 2 setup problem.
//
// Heap figures: the pyscript variant grows its heap on demand (split heap) and its gc.collect()
// called from Python only flags a collection that runs when control returns to JavaScript. So every
// measurement is two calls: runPython("gc.collect()"), then runPython(print gc.mem_alloc()). The
// figures are live bytes above a baseline taken the same way after interpreter start-up.

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import url from "node:url";

const HERE = path.dirname(url.fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..", "..");
const CONFIG = JSON.parse(fs.readFileSync(path.join(HERE, "portable.json"), "utf8"));
const WASM_REPO = "/repo"; // where the repository's portable files live in the wasm filesystem
const WASM_BOARD = "/board"; // stand-ins that make the port's import set look like the board's
const WASM_RUNNER = "/runner";

function fail(code, msg) {
  console.error("run.mjs: " + msg);
  process.exit(code);
}

// --- locating MicroPython -------------------------------------------------------------------
function packageDir() {
  // The variable, when set, is the only place looked at: a wrong setting must not pass silently.
  const env = process.env.SITE_AGENT_NODE_MODULES;
  const roots = [env ? path.resolve(env) : path.join(REPO, ".deps", "node_modules")];
  const want = CONFIG.micropython;
  for (const root of roots) {
    const dir = path.join(root, want.package);
    const pj = path.join(dir, "package.json");
    if (!fs.existsSync(pj)) continue;
    const version = JSON.parse(fs.readFileSync(pj, "utf8")).version;
    if (version !== want.version) {
      fail(2, `${dir} is version ${version}; the tests are pinned to ${want.version}.` + installHint());
    }
    return dir;
  }
  fail(2, `MicroPython WebAssembly port not found in ${roots.join(" or ")}.` + installHint());
}

function installHint() {
  const m = CONFIG.micropython;
  return (
    `\n  Install it with: sh tests/mpy/install.sh` +
    `\n  (npm install --prefix .deps ${m.package}@${m.version}), or point` +
    ` SITE_AGENT_NODE_MODULES at a node_modules that holds it.`
  );
}

// --- which files: data in portable.json, globs of the form dir/*.py ---------------------------
export function expand(patterns) {
  const out = [];
  for (const pat of patterns) {
    const dir = path.posix.dirname(pat);
    const base = path.posix.basename(pat);
    if (!base.includes("*")) {
      if (fs.existsSync(path.join(REPO, pat))) out.push(pat);
      continue;
    }
    const re = new RegExp("^" + base.replace(/\./g, "\\.").replace(/\*/g, ".*") + "$");
    const abs = path.join(REPO, dir);
    if (!fs.existsSync(abs)) continue;
    for (const name of fs.readdirSync(abs).sort()) {
      if (re.test(name) && fs.statSync(path.join(abs, name)).isFile()) out.push(dir + "/" + name);
    }
  }
  return [...new Set(out)];
}

// A target outside the repository (a self-check of the harness) is copied to this folder.
const WASM_EXTRA = "/extra";

function isOutside(file) {
  return path.isAbsolute(file) && path.relative(REPO, file).startsWith("..");
}

export function moduleName(file) {
  if (isOutside(file)) return path.basename(file, ".py");
  // agent/core/store/queue.py -> agent.core.store.queue; agent/__init__.py -> agent; tests/portable/t.py -> t;
  // a dotted name (asyncio, agent.core.poll.loop) is taken as it is.
  if (!file.endsWith(".py")) return file;
  if (file.startsWith("tests/portable/")) return path.posix.basename(file, ".py");
  let name = file.replace(/\.py$/, "").replace(/\//g, ".");
  if (name.endsWith(".__init__")) name = name.slice(0, -".__init__".length);
  return name;
}

// --- one interpreter --------------------------------------------------------------------------
export async function boot(target) {
  const { loadMicroPython } = await import(url.pathToFileURL(path.join(packageDir(), "micropython.mjs")));
  const out = (line) => process.stdout.write(line + "\n");
  const mp = await loadMicroPython({ heapsize: CONFIG.micropython.heap_bytes, stdout: out, stderr: out });
  const FS = mp.FS;
  for (const file of expand(CONFIG.copy)) {
    const dest = WASM_REPO + "/" + file;
    FS.mkdirTree(path.posix.dirname(dest));
    FS.writeFile(dest, fs.readFileSync(path.join(REPO, file)));
  }
  FS.mkdirTree(WASM_EXTRA);
  if (target && isOutside(target)) {
    FS.writeFile(WASM_EXTRA + "/" + path.basename(target), fs.readFileSync(target));
  }
  FS.mkdirTree(WASM_RUNNER);
  for (const f of ["mpy_runner.py", "heap_cycle.py"]) {
    FS.writeFile(WASM_RUNNER + "/" + f, fs.readFileSync(path.join(HERE, f)));
  }
  // The port freezes a dozen micropython-lib packages an ESP32 firmware does not carry, and
  // extends time/os/io/collections with them. Shadow those so an import that would fail on the
  // board fails here too.
  FS.mkdirTree(WASM_BOARD);
  for (const name of CONFIG.board_builtin_only) {
    FS.writeFile(`${WASM_BOARD}/${name}.py`, `from u${name} import *  # the built-in only\n`);
  }
  for (const name of CONFIG.absent_on_board) {
    FS.writeFile(
      `${WASM_BOARD}/${name}.py`,
      `raise ImportError("no module named '${name}' (not in ESP32 firmware; the WebAssembly ` +
        `port has it from micropython-lib)")\n`,
    );
  }
  const paths = [WASM_BOARD, WASM_REPO, WASM_REPO + "/tests/portable", WASM_EXTRA, WASM_RUNNER];
  paths.push(".frozen", "/lib");
  py(mp, `import sys, gc, os
sys.path.clear()
sys.path.extend(${JSON.stringify(paths)})
os.chdir("/tmp")
for _m in ${JSON.stringify(CONFIG.board_builtin_only)}:
    __import__(_m)
import mpy_runner
`);
  return mp;
}

// Run code at the top level; a Python exception is printed and returned as false.
export function py(mp, code) {
  try {
    mp.runPython(code);
    return true;
  } catch (e) {
    if (e.name !== "PythonError") throw e;
    process.stdout.write(e.message.endsWith("\n") ? e.message : e.message + "\n");
    return false;
  }
}

// Live heap in bytes: collect at the top level, then read the figure in a second call.
export function liveHeap(mp) {
  py(mp, "gc.collect()");
  py(mp, "_heap = gc.mem_alloc()");
  return mp.globals.get("_heap");
}

function kb(n) {
  return (n / 1024).toFixed(1) + " KB";
}

// --- commands (one target each) ---------------------------------------------------------------
async function runTest(file) {
  const mp = await boot(file);
  const name = moduleName(file);
  py(mp, "mpy_runner.install_asyncio_run()");
  const base = liveHeap(mp);
  const ran = py(mp, `_failed = mpy_runner.run_module(${JSON.stringify(name)})[1]`);
  const failed = !ran || mp.globals.get("_failed") > 0;
  const after = liveHeap(mp) - base;
  console.log(`HEAP tests:${name} ${after} (${kb(after)} live after running the module's tests)`);
  return failed ? 1 : 0;
}

// Two figures per module, each in a fresh interpreter: "total" is what importing it costs on its
// own (with everything it pulls in); "own" is what it adds once the modules it depends on are
// loaded (found by a first run in a child process). Budgets apply to "own", so a module is not
// charged for its dependencies, and a heavy dependency shows up on its own line.
async function runImport(file) {
  const name = moduleName(file);
  const probe = spawnSync(process.execPath, [url.fileURLToPath(import.meta.url), "deps", file], {
    encoding: "utf8",
  });
  const depsLine = (probe.stdout || "").split("\n").find((l) => l.startsWith("DEPS"));
  if (probe.status !== 0 || depsLine === undefined) {
    process.stdout.write(probe.stdout || "");
    process.stderr.write(probe.stderr || "");
    return probe.status === 2 ? 2 : 1;
  }
  const deps = depsLine.split(" ").slice(1).filter((d) => d);
  const mp = await boot(file);
  const base = liveHeap(mp);
  for (const dep of deps) {
    if (!py(mp, `__import__(${JSON.stringify(dep)})`)) return 1;
  }
  const mid = liveHeap(mp);
  if (!py(mp, `_ok = mpy_runner.import_module(${JSON.stringify(name)})`) || !mp.globals.get("_ok")) {
    return 1;
  }
  const after = liveHeap(mp);
  const own = after - mid;
  const total = after - base;
  const budgets = CONFIG.budgets;
  const limit = budgets.import_bytes[name] ?? budgets.import_default_bytes;
  const verdict = own <= limit ? "ok" : "OVER BUDGET";
  console.log(
    `HEAP import:${name} ${own} budget=${limit} ${verdict} total=${total}` +
      ` (own ${kb(own)} of ${kb(limit)}; ${kb(total)} with ${deps.length} dependencies)`,
  );
  return own <= limit ? 0 : 1;
}

async function runDeps(file) {
  const mp = await boot(file);
  const ok = py(mp, `_ok = mpy_runner.import_module(${JSON.stringify(moduleName(file))})`);
  return ok && mp.globals.get("_ok") ? 0 : 1;
}

async function runHeapCycle() {
  const mp = await boot();
  const base = liveHeap(mp);
  console.log(`HEAP baseline ${base} (interpreter, board stand-ins and runner; subtracted below)`);
  if (!py(mp, "import heap_cycle")) return 1;
  py(mp, "mpy_runner.install_asyncio_run()");
  let prev = liveHeap(mp) - base;
  console.log(`HEAP import ${prev} (core loop, scheduler, queue, log, driver base, asyncio)`);
  py(mp, "_n = len(heap_cycle.STEPS)");
  const n = mp.globals.get("_n");
  const figures = {};
  for (let i = 0; i < n; i++) {
    py(mp, `_label = heap_cycle.STEPS[${i}][0]`);
    const label = mp.globals.get("_label");
    if (!py(mp, `heap_cycle.step(${i})`)) return 1;
    const live = liveHeap(mp) - base;
    figures[label] = live;
    console.log(`HEAP ${label} ${live} (${live - prev >= 0 ? "+" : ""}${live - prev})`);
    prev = live;
  }
  const limit = CONFIG.budgets.core_loop_bytes;
  const got = figures.cycle1;
  const ok = got !== undefined && got <= limit;
  console.log(
    `BUDGET core_loop cycle1=${got} budget=${limit} ${ok ? "ok" : "OVER BUDGET"}` +
      ` (${kb(got ?? 0)} of ${kb(limit)})`,
  );
  const last = Object.keys(figures).pop();
  if (last !== "cycle1") console.log(`STEADY cycle2=${figures.cycle2} ${last}=${figures[last]}`);
  return ok ? 0 : 1;
}

const COMMANDS = {
  test: [runTest, () => expand([CONFIG.tests])],
  import: [runImport, () => expand(CONFIG.import)],
  heap: [runHeapCycle, () => ["heap_cycle"]],
  deps: [runDeps, () => []], // internal: the modules an import loads
};

async function main(argv) {
  const [cmd, ...targets] = argv;
  if (!COMMANDS[cmd]) fail(2, "usage: run.mjs test|import|heap [file ...]");
  const [fn, all] = COMMANDS[cmd];
  packageDir(); // fail early with the install hint
  const list = targets.length ? targets : all();
  if (list.length === 1) return fn(list[0]);
  if (!list.length) fail(2, `no files for '${cmd}'`);
  // Several targets: a fresh interpreter (a child process) for each.
  let status = 0;
  for (const t of list) {
    const r = spawnSync(process.execPath, [url.fileURLToPath(import.meta.url), cmd, t], {
      stdio: "inherit",
    });
    if (r.status !== 0) status = r.status === 2 ? 2 : Math.max(status, 1);
  }
  return status;
}

if (process.argv[1] && path.resolve(process.argv[1]) === url.fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
