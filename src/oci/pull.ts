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

/** The image's layers in order, each opening a verified blob stream. Unknown layer types fail OCI_UNSUPPORTED. */
export function layerSources(client: RegistryClient, image: ResolvedImage, memory?: LayerMemory): LayerSource[] {
  return image.manifest.layers.map((d) => {
    if (!isLayerMediaType(d.mediaType)) throw new GridboxError('OCI_UNSUPPORTED', `Cannot apply layer ${d.digest}: media type ${q(d.mediaType)} is not a tar layer`);
    const source: LayerSource = { digest: d.digest, open: () => client.openBlob(image.reference.registry, image.reference.repository, d) };
    if (memory) {
      source.remembered = () => memory.remembered(d.digest);
      source.remember = (records) => memory.remember(d.digest, records);
    }
    return source;
  });
}

/** Downloads, verifies and flattens all layers of `image` (those `memory` remembers are not downloaded). */
export function flattenImage(client: RegistryClient, image: ResolvedImage, options: FlattenOptions, memory?: LayerMemory): Promise<FlatTree> {
  return flattenLayers(layerSources(client, image, memory), options);
}
