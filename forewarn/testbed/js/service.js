// One shop service of the forewarn test bed in Node.js, run under the official OpenTelemetry JS SDK:
//   node --require @opentelemetry/auto-instrumentations-node/register service.js --name payments --port 8080
// configured only by OTEL_* environment variables (see forewarn/testbed/fleet.py). The http,
// express and undici instrumentations make the spans and the http.server/client.request.duration
// histograms, host-metrics the system.* and process.* metrics, the pino instrumentation sends the
// logs. Same call graph, routes, latencies, base error rates and fault switches (the control
// file) as the Python services in service.py. Two differences a reader should know: the catalog's
// SQLite is sql.js (WebAssembly; no native build, no auto-instrumentation), so its statements get
// a manual CLIENT span as a database instrumentation would make; and a deploy is applied from the
// control file in place (Node 20 cannot share a listening port between two processes).
'use strict';

const fs = require('node:fs');
const api = require('@opentelemetry/api');
const { HostMetrics } = require('@opentelemetry/host-metrics');
const express = require('express');
const pino = require('pino');

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const NAME = args.name;
const PORT = Number(args.port);
const CONTROL = process.env.TESTBED_CONTROL;
const log = pino({ level: 'info', base: { service: NAME } });
const PRODUCTS = 500;
const SIGMA = 0.35;
const MEDIAN_MS = {
  'GET /': 4, 'GET /products/{product_id}': 3, 'POST /checkout': 5, 'GET /recommendations': 6, 'GET /search': 4,
  'POST /orders': 8, 'POST /charge': 35, 'POST /reserve': 6, 'GET /stock/{product_id}': 3, 'GET /products': 2,
  'GET /products/{product_id}/stock': 2,
};

// seeded PRNG (mulberry32), so runs are comparable
let seed = 0;
for (const c of `${process.env.TESTBED_SEED || 1}/${NAME}/${process.pid}`) seed = (Math.imul(seed, 31) + c.charCodeAt(0)) | 0;
function random() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const gauss = () => Math.sqrt(-2 * Math.log(1 - random())) * Math.cos(2 * Math.PI * random());
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// -- fault switches: the control file, re-read when it changes ------------------------------------
let control = {};
let stamp = '';
function pollControl() {
  if (!CONTROL) return;
  try {
    const st = fs.statSync(CONTROL);
    const s = `${st.mtimeMs}/${st.size}`;
    if (s !== stamp) {
      control = JSON.parse(fs.readFileSync(CONTROL, 'utf8') || '{}');
      stamp = s;
    }
  } catch (e) {
    if (e.code === 'ENOENT') control = {};
  }
}
pollControl();
setInterval(pollControl, 200).unref();
const cfg = () => (control.services || {})[NAME] || {};

async function pause(route) {
  const c = cfg();
  const deploy = (c.deploy || {}).latency || {};
  const factor = (deploy[route] || 1) * ((c.latency || {})[route] || 1);
  await sleep((MEDIAN_MS[route] || 3) * Math.exp(gauss() * SIGMA) * factor);
}
const fails = () => random() < (cfg().error_ratio || 0);
const url = (dep) => process.env[`TESTBED_URL_${dep.toUpperCase()}`];

// -- background: log bursts, memory growth, the catalog's disk -------------------------------------
const leak = [];
let owed = 0; // MiB of the leak not yet allocated
let nextBurst = Date.now();
const disk = { capacity: 20 * 1024 ** 3, used: 0.6 * 20 * 1024 ** 3, drift: 0 };
setInterval(() => {
  const c = cfg();
  const rate = c.log_burst_per_s || 0;
  const now = Date.now();
  while (rate > 0 && nextBurst <= now) {
    const hex = () => Math.floor(random() * 2 ** 32).toString(16).padStart(8, '0');
    log.error(`warehouse sync aborted: manifest m-${String(Math.floor(random() * 1e6)).padStart(6, '0')} from feed ` +
      `${['eu-west', 'us-east', 'ap-south'][Math.floor(random() * 3)]} failed checksum (expected ${hex()}, got ${hex()})`);
    nextBurst += 1000 / rate;
  }
  if (rate <= 0) nextBurst = now;
  const mb = c.leak_mb_per_s || 0;
  if (mb > 0) {
    owed += mb * 0.25; // a whole MiB at a time, the fraction carried over: the rate asked for
    for (; owed >= 1; owed--) leak.push(Buffer.alloc(1 << 20, 1));
  } else if (leak.length) {
    log.warn(`session cache flushed: ${leak.length} MiB released`);
    leak.length = 0;
  }
  disk.drift = Math.max(-1, Math.min(1, disk.drift + gauss() * 0.05));
  let level = 0.6 + 0.0004 * disk.drift;
  if (c.disk) {
    const frac = Math.min(1, Math.max(0, (now / 1000 - c.disk.start) / c.disk.duration_s));
    level = c.disk.from + (c.disk.to - c.disk.from) * frac;
  }
  disk.used = Math.min(1, level) * disk.capacity;
}, 250).unref();

new HostMetrics({ name: 'host-metrics' }).start();
if (NAME === 'catalog') {
  const attrs = {
    'system.device': '/dev/vdb', 'system.filesystem.mountpoint': '/var/lib/catalog',
    'system.filesystem.type': 'ext4', 'system.filesystem.mode': 'rw',
  };
  api.metrics.getMeter('forewarn.testbed.disk', '1')
    .createObservableUpDownCounter('system.filesystem.usage', { unit: 'By', description: 'Filesystem bytes used.' })
    .addCallback((r) => {
      r.observe(Math.round(disk.used), { ...attrs, 'system.filesystem.state': 'used' });
      r.observe(Math.round(disk.capacity - disk.used), { ...attrs, 'system.filesystem.state': 'free' });
      r.observe(0, { ...attrs, 'system.filesystem.state': 'reserved' });
    });
}

// -- the app ---------------------------------------------------------------------------------------
const app = express();
app.use(express.json());
app.get('/healthz', (req, res) => res.json({ ok: true, pid: process.pid }));

class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}
const wrap = (fn) => (req, res, next) => fn(req, res).then((body) => { if (body !== undefined) res.json(body); }, next);
async function call(method, target, body) {
  const r = await fetch(target, {
    method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined,
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, json, text };
}
const relay = (r) => {
  if (r.status >= 400) throw new HttpError(r.status < 500 ? r.status : 502, `upstream: ${r.text.slice(0, 80)}`);
  return r.json;
};
const rid = (p, n) => `${p}${String(Math.floor(random() * 10 ** n)).padStart(n, '0')}`;

if (NAME === 'frontend') {
  app.get('/', wrap(async () => { await pause('GET /'); return { featured: relay(await call('GET', `${url('catalog')}/products?limit=8`)) }; }));
  app.get('/products/:product_id', wrap(async (req) => {
    await pause('GET /products/{product_id}');
    return relay(await call('GET', `${url('catalog')}/products/${Number(req.params.product_id)}`));
  }));
  app.get('/recommendations', wrap(async () => {
    await pause('GET /recommendations');
    return relay(await call('GET', `${url('catalog')}/products?limit=4&offset=${Math.floor(random() * 400)}`));
  }));
  app.get('/search', wrap(async (req) => {
    await pause('GET /search');
    return relay(await call('GET', `${url('catalog')}/products?limit=10&q=${encodeURIComponent(req.query.q || '')}`));
  }));
  app.post('/checkout', wrap(async (req) => {
    const body = req.body || {};
    if (!Array.isArray(body.items) || body.items.length === 0) {
      log.warn(`checkout rejected: empty cart for user ${body.user || '?'}`);
      throw new HttpError(400, 'cart is empty');
    }
    await pause('POST /checkout');
    return relay(await call('POST', `${url('checkout')}/orders`, body));
  }));
} else if (NAME === 'checkout') {
  app.post('/orders', wrap(async (req, res) => {
    await pause('POST /orders');
    const order = rid('o-', 8);
    if (fails()) {
      log.error(`order ${order} failed: order store unavailable (connection pool exhausted)`);
      res.status(500).json({ error: 'order store unavailable' });
      return undefined;
    }
    let total = 0;
    for (const item of req.body.items) {
      const p = await call('GET', `${url('catalog')}/products/${Number(item.id)}`);
      if (p.status === 404) throw new HttpError(404, `unknown product ${item.id}`);
      if (p.status >= 400) { log.error(`order ${order} failed: catalog answered ${p.status}`); throw new HttpError(502, 'catalog unavailable'); }
      total += p.json.price * Number(item.qty || 1);
    }
    const r = await call('POST', `${url('inventory')}/reserve`, { order, items: req.body.items });
    if (r.status >= 400) { log.warn(`order ${order}: reservation refused (${r.status})`); throw new HttpError(r.status === 409 ? 409 : 502, 'reservation failed'); }
    const c = await call('POST', `${url('payments')}/charge`, { order, amount: Math.round(total * 100) / 100 });
    if (c.status === 402) { log.info(`order ${order} declined by the card issuer`); throw new HttpError(402, 'payment declined'); }
    if (c.status >= 400) { log.error(`order ${order} failed: payments answered ${c.status}`); throw new HttpError(502, 'payments unavailable'); }
    log.info(`order ${order} placed: ${req.body.items.length} items, total ${total.toFixed(2)}`);
    return { order, total: Math.round(total * 100) / 100 };
  }));
} else if (NAME === 'payments') {
  app.post('/charge', wrap(async (req, res) => {
    await pause('POST /charge');
    const u = random();
    if (fails() || u < 0.003) {
      log.error(`charge for order ${req.body.order} failed: acquirer timeout after 3000 ms`);
      res.status(503).json({ error: 'acquirer timeout' });
      return undefined;
    }
    if (u < 0.02) {
      log.info(`charge for order ${req.body.order} declined: insufficient funds`);
      res.status(402).json({ error: 'declined' });
      return undefined;
    }
    log.info(`charged ${Number(req.body.amount || 0).toFixed(2)} for order ${req.body.order}`);
    return { status: 'captured', id: `ch_${Math.floor(random() * 2 ** 48).toString(16).padStart(12, '0')}` };
  }));
} else if (NAME === 'inventory') {
  app.post('/reserve', wrap(async (req, res) => {
    await pause('POST /reserve');
    if (fails()) {
      log.error(`reservation for order ${req.body.order} failed: lock wait timeout`);
      res.status(500).json({ error: 'lock wait timeout' });
      return undefined;
    }
    for (const item of req.body.items || []) {
      const r = await call('GET', `${url('catalog')}/products/${Number(item.id)}/stock`);
      if (r.status >= 400) throw new HttpError(r.status >= 500 ? 502 : 404, 'stock lookup failed');
      if (r.json.stock < Number(item.qty || 1)) { log.warn(`order ${req.body.order}: product ${item.id} out of stock`); throw new HttpError(409, 'out of stock'); }
    }
    log.info(`reserved ${(req.body.items || []).length} items for order ${req.body.order}`);
    return { reserved: true };
  }));
  app.get('/stock/:product_id', wrap(async (req) => {
    await pause('GET /stock/{product_id}');
    return relay(await call('GET', `${url('catalog')}/products/${Number(req.params.product_id)}/stock`));
  }));
} else if (NAME === 'catalog') {
  const tracer = api.trace.getTracer('forewarn.testbed.sqljs', '1');
  let db = null;
  async function query(sql, params) {
    // A CLIENT span per statement, named and attributed as the database semantic conventions say.
    const op = sql.split(' ')[0];
    return tracer.startActiveSpan(`${op} products`, {
      kind: api.SpanKind.CLIENT,
      attributes: { 'db.system.name': 'sqlite', 'db.system': 'sqlite', 'db.namespace': 'catalog', 'db.operation.name': op, 'db.collection.name': 'products', 'db.query.text': sql },
    }, async (span) => {
      try {
        const ms = cfg().db_delay_ms || 0;
        if (ms > 0) await sleep(ms * Math.exp(gauss() * SIGMA));
        const st = db.prepare(sql);
        st.bind(params);
        const rows = [];
        while (st.step()) rows.push(st.getAsObject());
        st.free();
        return rows;
      } catch (e) {
        span.recordException(e);
        span.setStatus({ code: api.SpanStatusCode.ERROR, message: String(e) });
        throw e;
      } finally {
        span.end();
      }
    });
  }
  const ready = require('sql.js')().then((SQL) => {
    db = new SQL.Database();
    db.run('CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, price REAL, stock INTEGER)');
    const words = ['lamp', 'chair', 'desk', 'mug', 'kettle', 'rug', 'shelf', 'clock', 'vase', 'stool'];
    const ins = db.prepare('INSERT INTO products VALUES (?, ?, ?, ?)');
    for (let i = 1; i <= PRODUCTS; i++) ins.run([i, `${words[i % 10]} ${i}`, 5 + ((i * 37) % 200), 1000]);
    ins.free();
  });
  app.use((req, res, next) => ready.then(() => next(), next));
  app.get('/products', wrap(async (req, res) => {
    await pause('GET /products');
    if (fails()) { log.error('product listing failed: database is locked'); res.status(500).json({ error: 'database is locked' }); return undefined; }
    const limit = Number(req.query.limit || 10);
    const rows = req.query.q
      ? await query('SELECT id, name, price FROM products WHERE name LIKE ? ORDER BY id LIMIT ?', [`%${req.query.q}%`, limit])
      : await query('SELECT id, name, price FROM products ORDER BY id LIMIT ? OFFSET ?', [limit, Number(req.query.offset || 0)]);
    return rows;
  }));
  app.get('/products/:product_id', wrap(async (req, res) => {
    await pause('GET /products/{product_id}');
    const id = Number(req.params.product_id);
    if (fails()) { log.error(`product ${id} lookup failed: database is locked`); res.status(500).json({ error: 'database is locked' }); return undefined; }
    const rows = await query('SELECT id, name, price FROM products WHERE id = ?', [id]);
    if (!rows.length) { log.info(`product ${id} not found`); throw new HttpError(404, 'no such product'); }
    return rows[0];
  }));
  app.get('/products/:product_id/stock', wrap(async (req) => {
    await pause('GET /products/{product_id}/stock');
    const id = Number(req.params.product_id);
    const rows = await query('SELECT stock FROM products WHERE id = ?', [id]);
    if (!rows.length) throw new HttpError(404, 'no such product');
    return { id, stock: rows[0].stock };
  }));
}

// errors: the status the handler chose, 500 for anything unexpected (logged with its stack)
app.use((err, req, res, _next) => {
  const status = err.status || 500;
  if (status >= 500 && !(err instanceof HttpError)) log.error({ err }, `unhandled error on ${req.method} ${req.path}`);
  res.status(status).json({ detail: err.message });
});

const server = app.listen(PORT, '127.0.0.1', () => log.info(`${NAME} ${process.env.TESTBED_VERSION || '1.0.0'} listening on 127.0.0.1:${PORT}`));
server.keepAliveTimeout = 30000;
process.on('SIGTERM', () => {
  // the SDK's own SIGTERM handler flushes; stop taking requests and leave it a moment
  server.close();
  setTimeout(() => process.exit(0), 2000).unref();
});
