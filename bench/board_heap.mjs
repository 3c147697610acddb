#!/usr/bin/env node
// Runs a board image's code under the MicroPython WebAssembly port (32-bit, like the ESP32) and
// reports live heap after each step. Driven by bench/board_heap.py; not a CI job.
//
//   node bench/board_heap.mjs <plan.json>
//
// plan.json: {"files": {"/lib/agent/...mpy": "<path on disk>", "/site.json": "...", ...},
//             "path": ["/board", "/lib", ...], "steps": [["label", "python code"], ...]}
// For each step: runPython(code), return to JavaScript, runPython("gc.collect()"), return, then
// print "HEAP <label> <gc.mem_alloc()> <gc.mem_free()>". The port only collects for real when
// control is back in JavaScript, hence the separate calls (see docs/micropython.md).
import fs from "node:fs";
import path from "node:path";
import url from "node:url";

const HERE = path.dirname(url.fileURLToPath(import.meta.url));
const REPO = path.resolve(HERE, "..");
const CONFIG = JSON.parse(fs.readFileSync(path.join(REPO, "tests", "mpy", "portable.json"), "utf8"));
const plan = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
const env = process.env.SITE_AGENT_NODE_MODULES;
const pkg = path.join(env || path.join(REPO, ".deps", "node_modules"), CONFIG.micropython.package);
const { loadMicroPython } = await import(url.pathToFileURL(path.join(pkg, "micropython.mjs")));
const out = (line) => process.stdout.write(line + "\n");
const mp = await loadMicroPython({ heapsize: plan.heap || 4 * 1024 * 1024, stdout: out, stderr: out });
const FS = mp.FS;
for (const [dest, src] of Object.entries(plan.files)) {
  FS.mkdirTree(path.posix.dirname(dest));
  FS.writeFile(dest, fs.readFileSync(src));
}
FS.mkdirTree("/board");
for (const name of CONFIG.board_builtin_only) {
  FS.writeFile(`/board/${name}.py`, `from u${name} import *  # the built-in only\n`);
}
for (const name of CONFIG.absent_on_board) {
  FS.writeFile(`/board/${name}.py`, `raise ImportError("no module named '${name}' (not in ESP32 firmware)")\n`);
}
FS.mkdirTree("/data");
mp.runPython(`import sys, gc, os
sys.path.clear()
sys.path.extend(${JSON.stringify(plan.path)})
os.chdir("/")
for _m in ${JSON.stringify(CONFIG.board_builtin_only)}:
    __import__(_m)
del _m
`);
let failed = false;
for (const [label, code] of plan.steps) {
  try {
    mp.runPython(code);
  } catch (e) {
    out(`FAIL ${label}: ${e.message || e}`);
    failed = true;
    break;
  }
  mp.runPython("gc.collect()");
  mp.runPython(`print("HEAP ${label}", gc.mem_alloc(), gc.mem_free())`);
}
process.exit(failed ? 1 : 0);
