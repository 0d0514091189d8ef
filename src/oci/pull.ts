// Joins the registry client and the flattener: a resolved image's layers as LayerSources streamed and
// verified from the registry, and `flattenImage()` as the one call a sync makes per changed image.
// No caching of blobs; a caller's LayerMemory may remember each layer's entries so it is not read again.
import { type FlatTree, type FlattenOptions, type LayerRecord, type LayerSource, flattenLayers } from './flatten.js';
import { isLayerMediaType } from './image.js';
import type { RegistryClient, ResolvedImage } from './registry-client.js';
import { GridboxError, q } from '../errors.js';

/** Entry lists of layers by digest (a digest pins the layer's bytes, hence its entries). */
export interface LayerMemory {
  remembered(digest: string): Promise<LayerRecord[] | undefined>;
  remember(digest: string, records: LayerRecord[]): void;
}

/** Called once a layer blob was downloaded whole and verified, with its (compressed) size: sync's counters. */
export type OnLayerDownloaded = (digest: string, bytes: number) => void;

/** The image's layers in order, each opening a verified blob stream. Unknown layer types fail OCI_UNSUPPORTED. */
export function layerSources(client: RegistryClient, image: ResolvedImage, memory?: LayerMemory, onLayer?: OnLayerDownloaded): LayerSource[] {
  return image.manifest.layers.map((d) => {
    if (!isLayerMediaType(d.mediaType)) throw new GridboxError('OCI_UNSUPPORTED', `Cannot apply layer ${d.digest}: media type ${q(d.mediaType)} is not a tar layer`);
    const open = (): AsyncGenerator<Buffer> => client.openBlob(image.reference.registry, image.reference.repository, d);
    const source: LayerSource = { digest: d.digest, open: onLayer === undefined ? open : () => counted(open(), d.size, (n) => onLayer(d.digest, n)) };
    if (memory) {
      source.remembered = () => memory.remembered(d.digest);
      source.remember = (records) => memory.remember(d.digest, records);
    }
    return source;
  });
}

/** Downloads, verifies and flattens all layers of `image` (those `memory` remembers are not downloaded). */
export function flattenImage(client: RegistryClient, image: ResolvedImage, options: FlattenOptions, memory?: LayerMemory, onLayer?: OnLayerDownloaded): Promise<FlatTree> {
  return flattenLayers(layerSources(client, image, memory, onLayer), options);
}

/**
 * Passes a blob stream through and reports it once its declared size has passed (openBlob yields the last
 * chunk only once the digest matched). Reported before that chunk is handed on: the flattener may stop
 * reading at the tar's end marker and never ask for the stream's end.
 */
async function* counted(blob: AsyncGenerator<Buffer>, size: number, done: (bytes: number) => void): AsyncGenerator<Buffer> {
  let n = 0;
  for await (const c of blob) {
    n += c.length;
    if (n === size) done(n);
    yield c;
  }
}
