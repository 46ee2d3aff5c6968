// No channel data yet (an offline box before its first cache): the panel says, in one sentence,
// how to get a catalog, naming the command the server's error names, and lists what is installed.
import { toError } from "./errors.js";

const MISSING = new Set(["cache_missing", "cache_corrupt"]);
export const DEFAULT_COMMAND = "cm-cli.py update-cache";

/** True when `err` means "no catalog on this machine yet" rather than a refusal or a bug. */
export function isCatalogMissing(err) {
  return MISSING.has(toError(err).code);
}

/** The one sentence shown where the list would be. */
export function catalogHowTo(err) {
  const d = toError(err).details || {};
  const command = typeof d.command === "string" && d.command ? d.command : DEFAULT_COMMAND;
  const dir = typeof d.cache_dir === "string" && d.cache_dir ? d.cache_dir.replace(/[\\/]channels[\\/]?$/, "") : "";
  return `No catalog on this machine yet: run \`python ${command}\` on a machine with network and copy its ` +
    `user/__manager/cache folder to ${dir || "the same place"} here, or pick a file:// channel in Settings.`;
}
