// Compile contracts/src/*.sol with the pinned npm solc (0.8.30) through its Node API and write
// contracts/build/<Name>.json = {"contractName", "abi", "bytecode", "deployedBytecode",
// "compiler", "settings", "sourceHash"}. The build output is committed so Python needs no node
// at run time; tests/test_deploy.py recompiles and checks the bytecode is unchanged.
// Usage: node contracts/compile.js [--check]   (--check: compare instead of writing; exit 1 on drift)
"use strict";
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");

const here = __dirname;
const nodeModules = process.env.TRIBUTARY_NODE_MODULES || path.join(here, "..", "node_modules");
const solc = require(path.join(nodeModules, "solc"));

const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "prague",
  outputSelection: { "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] } },
};

function main() {
  const check = process.argv.includes("--check");
  const srcDir = path.join(here, "src");
  const outDir = path.join(here, "build");
  const files = fs.readdirSync(srcDir).filter((f) => f.endsWith(".sol")).sort();
  const sources = {};
  for (const f of files) sources[f] = { content: fs.readFileSync(path.join(srcDir, f), "utf8") };
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (output.errors || []).filter((e) => e.severity === "error");
  for (const e of output.errors || []) process.stderr.write(e.formattedMessage + "\n");
  if (errors.length) process.exit(2);

  let drift = false;
  if (!check) fs.mkdirSync(outDir, { recursive: true });
  for (const file of files) {
    for (const [name, c] of Object.entries(output.contracts[file] || {})) {
      const artifact = {
        contractName: name,
        sourceName: "src/" + file,
        sourceHash: crypto.createHash("sha256").update(sources[file].content).digest("hex"),
        compiler: "solc " + solc.version(),
        settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion },
        abi: c.abi,
        bytecode: "0x" + c.evm.bytecode.object,
        deployedBytecode: "0x" + c.evm.deployedBytecode.object,
      };
      const text = JSON.stringify(artifact, null, 2) + "\n";
      const target = path.join(outDir, name + ".json");
      if (check) {
        const old = fs.existsSync(target) ? fs.readFileSync(target, "utf8") : "";
        if (old !== text) {
          process.stderr.write(`drift: ${target} differs from a fresh compile\n`);
          drift = true;
        }
      } else {
        fs.writeFileSync(target, text);
        process.stdout.write(`wrote ${path.relative(process.cwd(), target)}\n`);
      }
    }
  }
  if (drift) process.exit(1);
}

main();
