/**
 * `--logFormat text|json`, which the server and the client commands share:
 * the server's log lines, the client's notes on stderr.
 *
 * @module
 */
import type { FlagSpec, Reader } from "../args.ts";
import { setNoteFormat } from "../client/output.ts";
import { DEFAULT_LOG_FORMAT, LOG_FORMATS, parseLogFormat } from "../log.ts";

export { parseLogFormat };

/** `--logFormat FORMAT`. */
export const LOG_FORMAT_FLAG: FlagSpec = {
  name: "logFormat",
  kind: "value",
  valueName: "FORMAT",
  default: DEFAULT_LOG_FORMAT,
  description: `Log line format: ${LOG_FORMATS.join(", ")} (one JSON object per line)`,
};

/** Reads a client command's `--logFormat` and makes its stderr notes use it. */
export function readNoteFormat(read: Reader): void {
  setNoteFormat(read.value("logFormat", DEFAULT_LOG_FORMAT, parseLogFormat));
}
