// The benchmark's order handler (order.js: bench/components/common/order_logic.py, the same in
// JavaScript) as a wasi:http component: StarlingMonkey's `fetch` event, whose wasi:http
// bindings are native code in the engine. Its twin bench/components/order-js-trellis serves the
// same handleOrder (a link to this order.js) behind trellis:http.
import { handleOrder } from './order.js';

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  const [status, type, body] = handleOrder(request.method, url.pathname + url.search, await request.text());
  return new Response(body, { status, headers: { 'content-type': type } });
}
