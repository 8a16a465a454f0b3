/**
 * Finding the real tools some tests run: `bench/_which.ts`, which the
 * benchmark uses too.
 *
 * @module
 */
export { which } from "../bench/_which.ts";
