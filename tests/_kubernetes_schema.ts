/**
 * Checks Kubernetes objects against the API schemas of `kubernetes-models`,
 * strictly: the schema's own complaints, and the fields it does not know
 * (the compiled validators accept unknown fields; the API server does not).
 * Used by the manifest tests and the webhook tests, for any model class.
 *
 * @module
 */

/** A `kubernetes-models` class: constructed from the object, it validates it. */
export interface Model {
  prototype: { validate(): void };
  new (data: never): unknown;
}

type Json = Record<string, unknown>;

/** The schema's complaint about `object`, or undefined when it is valid. */
export function schemaError(Model: Model, object: unknown): string | undefined {
  try {
    (new Model(structuredClone(object) as never) as { validate(): void }).validate();
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}

/**
 * The fields of `object` its schema does not know, as paths: the validator
 * reads every field it declares and lists the keys of maps, so running it over
 * a Proxy that records those reads shows the keys it never looked at.
 */
export function unknownFields(Model: Model, object: Json): string[] {
  const read = new Set<string>();
  const listed = new Set<string>();
  const track = (value: unknown, path: string): unknown => {
    if (value === null || typeof value !== "object") return value;
    return new Proxy(value, {
      get(target, key, receiver) {
        const child = Reflect.get(target, key, receiver);
        if (typeof key !== "string") return child;
        read.add(`${path}/${key}`);
        return track(child, `${path}/${key}`);
      },
      has(target, key) {
        if (typeof key === "string") read.add(`${path}/${key}`);
        return Reflect.has(target, key);
      },
      ownKeys(target) {
        listed.add(path);
        return Reflect.ownKeys(target);
      },
    });
  };
  try {
    Model.prototype.validate.call(track(structuredClone(object), "") as never);
  } catch {
    // Schema errors are schemaError's to report.
  }
  const unknown: string[] = [];
  const walk = (value: unknown, path: string) => {
    if (value === null || typeof value !== "object") return;
    for (const [key, child] of Object.entries(value)) {
      const at = `${path}/${key}`;
      if (!Array.isArray(value) && !listed.has(path) && !read.has(at)) unknown.push(at);
      walk(child, at);
    }
  };
  walk(object, "");
  return unknown;
}

/** Every problem of `object` against `Model`: the schema's complaint and the unknown fields. */
export function strictProblems(Model: Model, object: Json): string[] {
  const error = schemaError(Model, object);
  return [...(error ? [error] : []), ...unknownFields(Model, object).map((p) => `unknown ${p}`)];
}
