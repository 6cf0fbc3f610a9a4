/// The data gradient of a 2-D 1x1 convolution with a stride above 1 and no padding (ResNet's projection
/// shortcuts; also a 1x1 strided deconvolution's forward): pixel `(sy*i, sx*j)` of channel `c` receives
/// `sum_o W[o, c] * dY[o, i, j]`, and no other pixel receives anything.
///
/// Why: the general path gathers a chunk's dY rows, multiplies them into a column buffer and col2im's that
/// buffer into an image `sy*sx` times its size, so the product's output crosses memory three times and the
/// image a fourth. Here each tile of the product (4 channels x 16 positions, a `Tile4x16` walked along the
/// output maps) is computed from dY in place and goes from registers straight into the image.
/// With `sx == 2` and whole 8-position rows, a tile row's 8 values and the 8 zeros between them are one
/// 16-float store; the rows that receive nothing are zeroed just before, while the sample's image is in cache.
///
/// Contract: sets the image to the gradient, or adds the gradient into it with `accumulate`. Each sum runs
/// over the output maps in order with fused multiply-adds (`Tile4x16`, as in `Gemm.small`), so a pixel has
/// the bits the general path gives when its product runs in those tiles.
struct StridedPointwiseData {
    let batch: Int, channels: Int, outmaps: Int, group: Int
    let height: Int, width: Int, outHeight: Int, outWidth: Int, strideY: Int

    /// nil unless the geometry is a 2-D 1x1 convolution without padding, with a column stride of 2 and an
    /// image exactly twice as wide as whole 8-position output rows (other geometries keep the general path).
    init?(_ g: ConvGeometry) {
        guard g.image.count == 2, g.kernel == [1, 1], g.pad == [0, 0], g.stride.count == 2, g.stride[1] == 2,
              g.stride[0] >= 1, g.col.count == 2, g.image[1] == 2 * g.col[1], g.col[1] % 8 == 0 else { return nil }
        batch = g.batch; channels = g.channels; outmaps = g.outmaps; group = g.group
        height = g.image[0]; width = g.image[1]
        outHeight = g.col[0]; outWidth = g.col[1]
        strideY = g.stride[0]
        // Every output position must land inside the image (true of any 1x1 convolution without padding).
        guard outHeight > 0, (outHeight - 1) * strideY < height
        else { return nil }
    }

    /// `image (+)= gradient` for every sample, the samples spread over the threads.
    func run(dy: UnsafePointer<Float>, weight: UnsafePointer<Float>, image: UnsafeMutablePointer<Float>,
             accumulate: Bool) {
        let work = (channels / group) * outmaps * outHeight * outWidth
        Threads.items(batch, workPerItem: work, Sample(geometry: self, dy: dy, weight: weight, image: image,
                                                       accumulate: accumulate))
    }

    private struct Sample: ParallelItem {
        let geometry: StridedPointwiseData
        let dy: UnsafePointer<Float>, weight: UnsafePointer<Float>, image: UnsafeMutablePointer<Float>
        let accumulate: Bool

        @inline(__always) func callAsFunction(_ n: Int) {
            let s = geometry
            let positions = s.outHeight * s.outWidth, pixels = s.height * s.width
            let cg = s.channels / s.group, mg = s.outmaps / s.group
            let dyn = dy + n * s.outmaps * positions, dxn = image + n * s.channels * pixels
            if !accumulate {
                // The interleaved stores set every pixel of the rows they reach; the other rows take zeros.
                for c in 0..<s.channels {
                    for y in 0..<s.height where y % s.strideY != 0 { ShortRows.zero(dxn + c * pixels + y * s.width, s.width) }
                }
            }
            let tiled = positions - positions % 16
            for g in 0..<s.group {
                let a = weight + g * mg * cg, b = dyn + g * mg * positions, out = dxn + g * cg * pixels
                var p0 = 0
                while p0 < tiled {
                    var c0 = 0
                    while c0 < cg {
                        s.tile(rows: min(4, cg - c0), k: mg, a: a + c0, lda: cg, b: b + p0, ldb: positions,
                               image: out + c0 * pixels, pixels: pixels, position: p0, overwrite: !accumulate)
                        c0 += 4
                    }
                    p0 += 16
                }
                // Positions past the last whole tile (8 of them, when the output has an odd number of rows).
                for c in 0..<cg {
                    let plane = out + c * pixels
                    for p in tiled..<positions {
                        var sum: Float = 0
                        for o in 0..<mg { sum.addProduct(a[o * cg + c], b[o * positions + p]) }
                        let i = p / s.outWidth, j = p - i * s.outWidth
                        let at = i * s.strideY * s.width + 2 * j
                        plane[at] = accumulate ? plane[at] + sum : sum
                        if !accumulate { plane[at + 1] = 0 }
                    }
                }
            }
        }
    }

    /// One tile: channels `0..<rows` (of `a`, `rows <= 4`) x positions `position ..< position + 16`, stored as
    /// interleaved vectors (set with `overwrite`, else added). Rows past `rows` repeat the last one, unstored.
    @inline(__always)
    private func tile(rows: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                      image: UnsafeMutablePointer<Float>, pixels: Int, position: Int, overwrite: Bool) {
        typealias V = SIMD8<Float>
        let t = Tile4x16(rows: rows, k: k, a: a, rowStep: 1, kStep: lda, b: b, ldb: ldb)
        // Where each run of 8 positions starts in a channel's plane.
        let i0 = position / outWidth, j0 = position - i0 * outWidth
        let i1 = (position + 8) / outWidth, j1 = position + 8 - i1 * outWidth
        let at0 = (i0 * strideY * width + 2 * j0) * 4, at1 = (i1 * strideY * width + 2 * j1) * 4
        let raw = UnsafeMutableRawPointer(image)
        @inline(__always) func put(_ x: V, _ at: Int) {
            var v = overwrite ? SIMD16<Float>() : raw.loadUnaligned(fromByteOffset: at, as: SIMD16<Float>.self)
            v.evenHalf = overwrite ? x : v.evenHalf + x
            raw.storeBytes(of: v, toByteOffset: at, as: SIMD16<Float>.self)
        }
        @inline(__always) func store(_ r: Int, _ x0: V, _ x1: V) {
            put(x0, r * pixels * 4 + at0)
            put(x1, r * pixels * 4 + at1)
        }
        store(0, t.c00, t.c01)
        if rows > 1 { store(1, t.c10, t.c11) }
        if rows > 2 { store(2, t.c20, t.c21) }
        if rows > 3 { store(3, t.c30, t.c31) }
    }
}
