// What a protocol layer offers the gateway's own reads of live values (the interlocks' process image,
// max_step bases): a seam like CommandPipeline, so the process image asks a reader and the protocol
// layer implements it (protocols/opcua/upstream.ts) without either importing the other.

/**
 * Reads nodes of an OPC UA asset in one request (the gateway's own upstream session). Resolves one
 * value per target in engineering units (booleans 1/0), NaN for a node whose answer is not Good; or
 * a short word saying why nothing could be read ('unavailable', 'timeout', 'failed'). Never rejects.
 */
export interface NodeReader {
  readValues(targets: readonly string[]): Promise<Float64Array | string>;
}
