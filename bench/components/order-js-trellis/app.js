// The benchmark's order handler (order.js: bench/components/common/order_logic.py, the same in
// JavaScript) behind trellis:http/incoming-handler: one request record in, one response record
// out. Its twin bench/components/order-js-wasi-http serves the same handleOrder (order.js here is
// a link to that folder's) behind wasi:http.
import { handleOrder } from './order.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export const incomingHandler = {
  handle(request) {
    const [status, type, body] = handleOrder(request.method, request.pathWithQuery, decoder.decode(request.body));
    return { status, headers: [['content-type', encoder.encode(type)]], body: encoder.encode(body) };
  },
};
