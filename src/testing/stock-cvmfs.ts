// The stock CernVM-FS client for benches (implementation in bench/stock-cvmfs.ts, where bench/mount.ts may
// import it). Never a test dependency: findStockCvmfs() answers undefined when the prefix is absent.
export { DEFAULT_STOCK_PREFIX, findStockCvmfs, mountStock, stockConfig, type StockCvmfs, type StockMount, type StockMountOptions } from '../bench/stock-cvmfs.js';
