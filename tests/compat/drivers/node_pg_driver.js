// node-postgres (pg 8) driver of the compatibility suite (tests/compat).
//
// Usage: node node_pg_driver.js SCENARIO.json   (NODE_PATH names the node_modules holding pg)
//
// Modes: "simple" (a query without values: node-postgres sends the simple Query protocol),
// "extended" (queryMode: 'extended', unnamed statements: Parse/Bind/Describe/Execute/Sync),
// "prepared" (every statement a named prepared statement). Results are printed as JSON on
// stdout, in the shape tests/compat/harness.rs compares.
'use strict';

const fs = require('fs');
const { Client } = require('pg');

function value(v) {
  if (v === null || v === undefined) return null;
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

function error(e) {
  return { error: { sqlstate: e.code || null, message: e.message } };
}

function result(r) {
  const out = { tag: r.rowCount === null ? r.command : `${r.command} ${r.rowCount}` };
  if (r.fields && r.fields.length > 0) {
    out.rows = r.rows.map((row) => row.map(value));
  }
  return out;
}

async function main() {
  const scenario = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
  const c = scenario.connection;
  const client = new Client({
    host: c.host, port: c.port, user: c.user, password: c.password, database: c.database,
    ssl: false, application_name: 'compat-node-pg',
  });
  await client.connect();
  let counter = 0;
  const query = (sql) => {
    const q = { text: sql, rowMode: 'array' };
    if (scenario.mode === 'extended') q.queryMode = 'extended';
    if (scenario.mode === 'prepared') q.name = `compat_${counter++}`;
    return client.query(q);
  };
  const out = [];
  for (const step of scenario.steps) {
    const results = [];
    if (step.transaction) {
      await client.query('BEGIN');
      let failed = false;
      for (const sql of step.sql) {
        try {
          results.push(result(await query(sql)));
        } catch (e) {
          results.push(error(e));
          failed = true;
          break;
        }
      }
      await client.query(failed ? 'ROLLBACK' : 'COMMIT');
    } else {
      for (const sql of step.sql) {
        try {
          results.push(result(await query(sql)));
        } catch (e) {
          results.push(error(e));
        }
      }
    }
    out.push({ name: step.name, results });
  }
  await client.end();
  process.stdout.write(JSON.stringify(out, null, 1));
}

main().catch((e) => {
  process.stderr.write(`node_pg_driver: ${e.stack || e}\n`);
  process.exit(1);
});
