// fast-check, for the property tests: one place for its version. It is not
// in deno.json's imports, so that `deno task server` on an empty cache does
// not download it (README's dependencies say why).
export { default } from "npm:fast-check@^4.10.2";
