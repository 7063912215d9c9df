// Drives forewarn's ClickHouse HTTP interface with the official JS client (@clickhouse/client)
// and prints one JSON object of what each call returned; the pytest test asserts on it.
// usage: node check.mjs URL DATABASE ADMIN_USER ADMIN_PASSWORD
import { createClient } from '@clickhouse/client'

const [url, database, adminUser, adminPassword] = process.argv.slice(2)
const out = {}
const reader = createClient({ url, database })
const gz = createClient({ url, database, compression: { response: true, request: true } })
const admin = createClient({ url, database, username: adminUser, password: adminPassword })

async function attempt(name, fn) {
  try {
    out[name] = await fn()
  } catch (e) {
    out[name] = { error: String(e.message || e), code: e.code ?? null, type: e.type ?? null }
  }
}

await attempt('ping', async () => (await reader.ping()).success)
await attempt('json', async () => {
  const rs = await reader.query({ query: 'SELECT k, s FROM kv ORDER BY k LIMIT 3', format: 'JSON' })
  return await rs.json()
})
await attempt('jsonEachRow', async () => {
  const rs = await reader.query({ query: 'SELECT k, s FROM kv ORDER BY k LIMIT 3', format: 'JSONEachRow' })
  return await rs.json()
})
await attempt('params', async () => {
  const rs = await reader.query({
    query: 'SELECT count() AS n FROM kv WHERE k < {lim:UInt64} AND s != {s:String}',
    format: 'JSONEachRow',
    query_params: { lim: 10, s: "it's" },
  })
  return await rs.json()
})
await attempt('stream', async () => {
  const rs = await reader.query({ query: 'SELECT number FROM numbers(300000)', format: 'JSONCompactEachRowWithNamesAndTypes' })
  let rows = 0
  for await (const batch of rs.stream()) rows += batch.length
  return rows
})
await attempt('streamEachRow', async () => {
  const rs = await reader.query({ query: 'SELECT number FROM numbers(300000)', format: 'JSONEachRow' })
  let rows = 0
  for await (const batch of rs.stream()) rows += batch.length
  return rows
})
await attempt('csv', async () => (await (await reader.query({ query: 'SELECT 1, 2', format: 'CSV' })).text()))
await attempt('gzip', async () => {
  const rs = await gz.query({ query: 'SELECT sum(number) AS s FROM numbers(100000)', format: 'JSONEachRow' })
  return await rs.json()
})
await attempt('settings', async () => {
  const rs = await reader.query({
    query: 'SELECT toUInt64(1) AS x',
    format: 'JSONEachRow',
    clickhouse_settings: { output_format_json_quote_64bit_integers: 0, max_execution_time: 10 },
  })
  return await rs.json()
})
await attempt('readerInsert', async () => {
  await reader.insert({ table: 'js_w', values: [{ a: 1 }], format: 'JSONEachRow' })
  return 'inserted'
})
await attempt('readerCommand', async () => {
  await reader.command({ query: 'CREATE TABLE js_evil (a UInt8) ENGINE = Memory' })
  return 'created'
})
await attempt('readerLiftLimit', async () => {
  await reader.query({ query: 'SELECT 1', clickhouse_settings: { max_execution_time: 100000 } })
  return 'ran'
})
await attempt('adminCommand', async () => {
  await admin.command({ query: 'CREATE TABLE IF NOT EXISTS js_w (a UInt32) ENGINE = MergeTree ORDER BY a' })
  return 'ok'
})
await attempt('adminInsert', async () => {
  await admin.insert({ table: 'js_w', values: [{ a: 1 }, { a: 2 }, { a: 3 }], format: 'JSONEachRow' })
  const rs = await admin.query({ query: 'SELECT sum(a) AS s FROM js_w', format: 'JSONEachRow' })
  return await rs.json()
})
await attempt('adminGzipInsert', async () => {
  const c = createClient({ url, database, username: adminUser, password: adminPassword, compression: { request: true } })
  await c.insert({ table: 'js_w', values: [{ a: 10 }], format: 'JSONEachRow' })
  await c.close()
  return 'ok'
})
await attempt('syntaxError', async () => {
  await reader.query({ query: 'SELEC 1' })
  return 'ran'
})
await attempt('badPassword', async () => {
  const c = createClient({ url, database, username: adminUser, password: 'wrong' })
  try {
    await c.query({ query: 'SELECT 1' })
    return 'ran'
  } finally {
    await c.close()
  }
})
await Promise.all([reader.close(), gz.close(), admin.close()])
console.log(JSON.stringify(out))
