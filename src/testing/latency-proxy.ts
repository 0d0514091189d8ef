// The loopback latency proxy for tests (implementation in bench/latency-proxy.ts, where benches may import it).
export { startLatencyProxy, type LatencyProxy, type LatencyProxyOptions } from '../bench/latency-proxy.js';
