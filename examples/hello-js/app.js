// hello-js: a wasi:http component in JavaScript that counts its visits in key-value.
//
// It exports wasi:http/incoming-handler (the standard HTTP world, served here through the
// engine's `fetch` event, as in a service worker) and imports wasi:keyvalue. `trellis build`
// builds it with componentize-js.
import { open } from 'wasi:keyvalue/store@0.2.0-draft';
import { increment } from 'wasi:keyvalue/atomics@0.2.0-draft';

addEventListener('fetch', (event) => event.respondWith(handle(event.request)));

async function handle(request) {
  const url = new URL(request.url);
  // "default" is the link's bucket: the link's config decides which real bucket it is
  const visits = increment(open('default'), 'visits', 1n);
  const body = `Hello from hello-js!\nYou asked for ${request.method} ${url.pathname}${url.search}\nvisits: ${visits}\n`;
  return new Response(body, { headers: { 'content-type': 'text/plain; charset=utf-8' } });
}
