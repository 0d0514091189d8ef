// Joins the registry client and the flattener: a resolved image's layers as LayerSources streamed and
// verified from the registry, and `flattenImage()` as the one call a sync makes per changed image.
// No caching of blobs across images (a content-addressed store downstream deduplicates files).
import { type FlatTree, type FlattenOptions, type LayerSource, flattenLayers } from './flatten.js';
import { isLayerMediaType } from './image.js';
import type { RegistryClient, ResolvedImage } from './registry-client.js';
import { GridboxError, q } from '../errors.js';

/** The image's layers in order, each opening a verified blob stream. Unknown layer types fail OCI_UNSUPPORTED. */
export function layerSources(client: RegistryClient, image: ResolvedImage): LayerSource[] {
  return image.manifest.layers.map((d) => {
    if (!isLayerMediaType(d.mediaType)) throw new GridboxError('OCI_UNSUPPORTED', `Cannot apply layer ${d.digest}: media type ${q(d.mediaType)} is not a tar layer`);
    return { digest: d.digest, open: () => client.openBlob(image.reference.registry, image.reference.repository, d) };
  });
}

/** Downloads, verifies and flattens all layers of `image`. */
export function flattenImage(client: RegistryClient, image: ResolvedImage, options: FlattenOptions): Promise<FlatTree> {
  return flattenLayers(layerSources(client, image), options);
}
