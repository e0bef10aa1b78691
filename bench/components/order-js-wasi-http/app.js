// The benchmark's order handler (bench/components/common/order_logic.py, the same in
// JavaScript) as a wasi:http component: StarlingMonkey's `fetch` event, whose wasi:http
// bindings are native code in the engine. Its twin bench/components/order-js-trellis has the
// same handleOrder behind trellis:http; keep the two copies identical.
const JSON_TYPE = 'application/json';
const TEXT_TYPE = 'text/plain; charset=utf-8';

function handleOrder(method, path, text) {
  if (path.split('?', 1)[0] !== '/orders' || method !== 'POST') return [404, TEXT_TYPE, '404 Not Found\n'];
  let lines;
  try {
    const items = JSON.parse(text);
    if (!Array.isArray(items) || items.length === 0) throw new Error('expected a non-empty list of line items');
    lines = items.map((i) => {
      const price = Math.trunc(Number(i.price)), quantity = Math.trunc(Number(i.quantity));
      if (i.sku === undefined || !Number.isFinite(price) || !Number.isFinite(quantity)) throw new Error('bad line item');
      return { sku: String(i.sku), price, quantity };
    });
  } catch (err) {
    return [400, TEXT_TYPE, `400 Bad Request: ${err.message}\n`];
  }
  const order = { order_number: crypto.randomUUID(), line_items: lines,
                  total: lines.reduce((sum, l) => sum + l.price * l.quantity, 0) };
  return [201, JSON_TYPE, JSON.stringify(order)];
}

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  const [status, type, body] = handleOrder(request.method, url.pathname + url.search, await request.text());
  return new Response(body, { status, headers: { 'content-type': type } });
}
