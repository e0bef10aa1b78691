// The benchmark's order handler (bench/components/common/order_logic.py, the same in JavaScript),
// shared by the two JavaScript components: order-js-wasi-http (this folder, wasi:http) and
// order-js-trellis (trellis:http), whose order.js is a link to this file.
const JSON_TYPE = 'application/json';
const TEXT_TYPE = 'text/plain; charset=utf-8';

export function handleOrder(method, path, text) {
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
