// Starts the real tally binary (TALLY_BIN, else the workspace's debug build) on a temp
// SQLite file and port 0, and reads its address from its first stdout line.
import { spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

export const SERVICE_KEY = "service-key-for-the-ts-client";
export const ADMIN_KEY = "admin-key-for-the-ts-client";

export async function startTally(extraConfig = "") {
  const binary = process.env.TALLY_BIN ?? resolve(import.meta.dirname, "../../../target/debug/tally");
  const dir = mkdtempSync(join(tmpdir(), "tally-ts-"));
  const config = join(dir, "tally.toml");
  writeFileSync(
    config,
    `[server]\nlisten = "127.0.0.1:0"\n[database]\npath = "${join(dir, "tally.db")}"\n` +
      `[auth]\nservice_keys = ["${SERVICE_KEY}"]\nadmin_keys = ["${ADMIN_KEY}"]\n${extraConfig}`,
  );
  const child = spawn(binary, ["serve", "--config", config], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: "warn" } });
  const lines = createInterface({ input: child.stdout });
  const address = await new Promise((resolvePromise, reject) => {
    child.once("exit", (code) => reject(new Error(`tally exited with ${code} before listening`)));
    lines.once("line", (line) => resolvePromise(line.replace(/^listening on /, "")));
  });
  return { url: address, stop: () => child.kill("SIGTERM") };
}
