// Peak live MicroPython heap of the queue benchmark's workload (bench/mpy_queue_workload.py).
//   node bench/mpy_queue_heap.mjs
// Boots the WebAssembly port through the tests/mpy harness, then runs the workload one step per
// top-level call, collecting and sampling gc.mem_alloc() after each (the port's gc.collect()
// only takes effect between calls). Prints "HEAP <phase> peak=<bytes>" per phase and the overall
// peak, all above the bare interpreter's baseline.
import fs from "node:fs";
import path from "node:path";
import url from "node:url";
import { boot, py, liveHeap } from "../tests/mpy/run.mjs";

const HERE = path.dirname(url.fileURLToPath(import.meta.url));
const mp = await boot();
mp.FS.writeFile("/extra/mpy_queue_workload.py", fs.readFileSync(path.join(HERE, "mpy_queue_workload.py")));
const base = liveHeap(mp);
if (!py(mp, "import mpy_queue_workload as W")) process.exit(1);
const imported = liveHeap(mp) - base;
console.log(`HEAP baseline ${base}`);
console.log(`HEAP import ${imported}`);
py(mp, "_n = len(W.STEPS)");
const n = mp.globals.get("_n");
const peaks = {};
let peak = imported;
for (let i = 0; i < n; i++) {
  py(mp, `_label = W.STEPS[${i}][0]`);
  const label = mp.globals.get("_label");
  if (!py(mp, `W.step(${i})`)) process.exit(1);
  const live = liveHeap(mp) - base;
  peaks[label] = Math.max(peaks[label] ?? 0, live);
  peak = Math.max(peak, live);
}
for (const [label, v] of Object.entries(peaks)) console.log(`HEAP ${label} peak=${v}`);
console.log(`PEAK ${peak} (${(peak / 1024).toFixed(1)} KB above the bare interpreter)`);
