import KilnCore

/// The im2col / col2im transforms of an N-D convolution, with every index table computed once.
///
/// An image is `[channels, *imageSize]` (row-major); its columns are `[channels * K, colCount]` with
/// `K = prod(kernel)` and `colCount = prod(colSize)`, row `c*K + k` holding, for each output position `o`,
/// the image value at `o*stride - pad + k*dilation` (0 where that falls into the padding).
///
/// The last spatial dimension is the inner loop: for each kernel offset along it the range of output
/// positions that land inside the image is precomputed, so rows are a zero-fill, a copy (or strided gather)
/// and a zero-fill. The outer dimensions are a table `rowOffset[kOuter, oOuter]` of image offsets (-1 when
/// the row lies in the padding). Tables live in pointers owned by this object: running allocates nothing.
package final class Im2ColPlan {
    let channels: Int
    let kernelCount: Int
    let imageCount: Int
    let colCount: Int
    private let kOuter: Int
    private let oOuter: Int
    private let kLast: Int
    private let oLast: Int
    private let sLast: Int
    private let rowOffset: UnsafeMutablePointer<Int>
    private let lo: UnsafeMutablePointer<Int>
    private let hi: UnsafeMutablePointer<Int>
    private let base: UnsafeMutablePointer<Int>
    /// Stride 1 and as many output columns as image columns along the last dimension: the rows of one kernel
    /// offset, for consecutive output rows inside the image, are one contiguous stretch of the image.
    private let contiguousRows: Bool
    /// Stride 2 from image rows of 16 floats to 8 outputs (ResNet-20's stage-3 downsampling and projection
    /// convolutions): see `halfRow`.
    private let halvedRows: Bool
    /// col2im by phases for strided 2-D convolutions (nil otherwise, or where it does not apply).
    private let strided: StridedCol2Im?

    /// All arrays have the spatial rank (>= 1); sizes are validated by the caller (outputs >= 1).
    init(channels: Int, image: [Int], col: [Int], kernel: [Int], pad: [Int], stride: [Int], dilation: [Int]) {
        let d = image.count
        self.channels = channels
        kernelCount = kernel.reduce(1, *)
        imageCount = image.reduce(1, *)
        colCount = col.reduce(1, *)
        kLast = kernel[d - 1]
        oLast = col[d - 1]
        sLast = stride[d - 1]
        kOuter = kernel[0..<(d - 1)].reduce(1, *)
        oOuter = col[0..<(d - 1)].reduce(1, *)

        let imageStrides = Shapes.strides(image)
        rowOffset = .allocate(capacity: max(kOuter * oOuter, 1))
        for ko in 0..<kOuter {
            // Multi-indices over the outer kernel and column dimensions (row-major).
            var kRest = ko
            var kIdx = [Int](repeating: 0, count: d)
            for j in Swift.stride(from: d - 2, through: 0, by: -1) { kIdx[j] = kRest % kernel[j]; kRest /= kernel[j] }
            for oo in 0..<oOuter {
                var oRest = oo
                var off = 0
                var inside = true
                for j in Swift.stride(from: d - 2, through: 0, by: -1) {
                    let o = oRest % col[j]
                    oRest /= col[j]
                    let i = o * stride[j] - pad[j] + kIdx[j] * dilation[j]
                    if i < 0 || i >= image[j] { inside = false } else { off += i * imageStrides[j] }
                }
                rowOffset[ko * oOuter + oo] = inside ? off : -1
            }
        }
        contiguousRows = stride[d - 1] == 1 && col[d - 1] == image[d - 1]
        halvedRows = stride[d - 1] == 2 && col[d - 1] == 8 && image[d - 1] == 16
        lo = .allocate(capacity: kLast)
        hi = .allocate(capacity: kLast)
        base = .allocate(capacity: kLast)
        let w = image[d - 1], s = sLast
        for k in 0..<kLast {
            let b = k * dilation[d - 1] - pad[d - 1]
            // Output positions o with 0 <= o*s + b < w.
            let first = b >= 0 ? 0 : (-b + s - 1) / s
            let lastPlusOne = (w - 1 - b) < 0 ? 0 : (w - 1 - b) / s + 1
            let l = min(first, oLast)
            base[k] = b
            lo[k] = l
            hi[k] = max(l, min(lastPlusOne, oLast))
        }
        strided = StridedCol2Im(image: image, col: col, kernel: kernel, pad: pad, stride: stride, dilation: dilation,
                                lo: lo, hi: hi)
    }

    /// Whether col2im runs by phases (`StridedCol2Im`).
    var col2imByPhases: Bool { strided != nil }

    deinit {
        rowOffset.deallocate()
        lo.deallocate()
        hi.deallocate()
        base.deallocate()
    }

    /// Fills `col` (`channels*K x colCount`) from `image` (`channels x imageCount`).
    func im2col(_ image: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>) {
        im2col(samples: 1, image, imageStride: 0, col, ld: colCount)
    }

    /// Columns of `samples` images side by side: sample `s` (at `image + s*imageStride`) fills columns
    /// `[s*colCount, (s+1)*colCount)` of a `channels*K x ld` matrix, so one matrix product covers them all.
    /// Each row is filled for every sample in turn: its index arithmetic is done once and the writes are
    /// sequential.
    func im2col(samples: Int, _ image: UnsafePointer<Float>, imageStride: Int, _ col: UnsafeMutablePointer<Float>, ld: Int,
                parallel: Bool = true) {
        let rows = channels * kernelCount
        if !parallel {
            for r in 0..<rows { row(r, samples: samples, image, imageStride: imageStride, col + r * ld) }
            return
        }
        Threads.items(rows, workPerItem: samples * colCount,
                      Rows(plan: self, samples: samples, image: image, imageStride: imageStride, col: col, ld: ld))
    }

    /// One column row per item.
    private struct Rows: ParallelItem {
        let plan: Im2ColPlan, samples: Int, image: UnsafePointer<Float>, imageStride: Int
        let col: UnsafeMutablePointer<Float>, ld: Int
        @inline(__always) func callAsFunction(_ r: Int) {
            plan.row(r, samples: samples, image, imageStride: imageStride, col + r * ld)
        }
    }

    @inline(__always)
    private func row(_ r: Int, samples: Int, _ image: UnsafePointer<Float>, imageStride: Int,
                     _ rowStart: UnsafeMutablePointer<Float>) {
        let c = r / kernelCount
        let k = r - c * kernelCount
        let ko = k / kLast
        let kl = k - ko * kLast
        let l = lo[kl], h = hi[kl], b = base[kl], ow = oLast, s = sLast
        let offsets = rowOffset + ko * oOuter
        var dst = rowStart
        if vectorRows(l, h) {
            // Whole rows of whole vectors (LeNet's convolutions: 8 and 24 wide, no padding): a few vector copies
            // per row, without the general path's per-row run checks and length handling, which cost more than
            // the copy at these widths (LeNet conv2's im2col took half its forward).
            let vectors = ow / 8
            for n in 0..<samples {
                let src = UnsafeRawPointer(image + n * imageStride + c * imageCount + b)
                let d = UnsafeMutableRawPointer(dst)
                for oo in 0..<oOuter {
                    let off = offsets[oo]
                    if vectors == 1 {
                        let v = off < 0 ? SIMD8<Float>() : src.loadUnaligned(fromByteOffset: off * 4, as: SIMD8<Float>.self)
                        d.storeBytes(of: v, toByteOffset: oo * 32, as: SIMD8<Float>.self)
                        continue
                    }
                    for j in 0..<vectors {
                        let v = off < 0 ? SIMD8<Float>()
                            : src.loadUnaligned(fromByteOffset: (off + 8 * j) * 4, as: SIMD8<Float>.self)
                        d.storeBytes(of: v, toByteOffset: (oo * ow + 8 * j) * 4, as: SIMD8<Float>.self)
                    }
                }
                dst += oOuter * ow
            }
            return
        }
        if halvedRows && abs(b) <= 1 && l == (b < 0 ? 1 : 0) && h == ow {
            // Eight outputs of stride 2 from a 16-float image row: one load of the row and its even or odd
            // lanes, where the general path below gathers them one float at a time (it took a third of
            // stage3-down's forward).
            for n in 0..<samples {
                let src = UnsafeRawPointer(image + n * imageStride + c * imageCount)
                let d = UnsafeMutableRawPointer(dst)
                for oo in 0..<oOuter {
                    let off = offsets[oo]
                    let v = off < 0 ? SIMD8<Float>() : Self.halfRow(src + off * 4, shift: b)
                    d.storeBytes(of: v, toByteOffset: oo * 32, as: SIMD8<Float>.self)
                }
                dst += oOuter * ow
            }
            return
        }
        for n in 0..<samples {
            let src = image + n * imageStride + c * imageCount
            var oo = 0
            while oo < oOuter {
                let off = offsets[oo]
                // A run of output rows whose image rows follow each other is one copy (then the columns that
                // fall into the padding are zeroed), provided the stretch read stays inside this image plane.
                let run = contiguousRun(offsets, from: oo, shift: b)
                if run > 1 {
                    ShortRows.copy(dst, src + (off + b), run * ow)
                    zeroPaddingColumns(dst, rows: run, l, h)
                    dst += run * ow
                    oo += run
                    continue
                }
                // Rows are short (the output width): see ShortRows.
                if off < 0 {
                    ShortRows.zero(dst, ow)
                } else {
                    ShortRows.zeroFew(dst, l)
                    let p = src + (off + b)
                    if s == 1 {
                        ShortRows.copy(dst + l, p + l, h - l)
                    } else if s == 2 {
                        ShortRows.copyEven(dst + l, p + 2 * l, h - l)
                    } else {
                        var o = l
                        while o < h { dst[o] = p[o * s]; o += 1 }
                    }
                    ShortRows.zeroFew(dst + h, ow - h)
                }
                dst += ow
                oo += 1
            }
        }
    }

    /// Output `o` of a stride-2 row over a 16-float image row is column `2o + shift` (`shift` in -1...1), 0
    /// where that column is left of the row. Only the row's own 16 floats are read.
    @inline(__always)
    private static func halfRow(_ row: UnsafeRawPointer, shift: Int) -> SIMD8<Float> {
        let v = row.loadUnaligned(as: SIMD16<Float>.self)
        if shift == 0 { return v.evenHalf }
        let odd = v.oddHalf
        if shift == 1 { return odd }
        return SIMD8(0, odd[0], odd[1], odd[2], odd[3], odd[4], odd[5], odd[6])
    }

    /// Stride 1, rows that do not touch the padding along the row (`lo...hi` is the whole row), a whole number
    /// of 8-float vectors wide, and not already handled as contiguous runs.
    @inline(__always)
    private func vectorRows(_ l: Int, _ h: Int) -> Bool {
        sLast == 1 && l == 0 && h == oLast && oLast % 8 == 0 && !contiguousRows
    }

    /// How many output rows from `oo` on read consecutive image rows for a kernel offset whose last-dimension
    /// shift is `shift`, with the stretch read staying inside the image plane (0 when the rows are not
    /// contiguous at all). Such a run is one copy (or addition) of `run * rowLength` floats.
    @inline(__always)
    private func contiguousRun(_ offsets: UnsafeMutablePointer<Int>, from oo: Int, shift: Int) -> Int {
        let off = offsets[oo], ow = oLast
        guard contiguousRows && off >= 0 && off + shift >= 0 else { return 0 }
        var end = oo + 1
        while end < oOuter && offsets[end] == offsets[end - 1] + ow { end += 1 }
        while end > oo && off + shift + (end - oo) * ow > imageCount { end -= 1 }
        return end - oo
    }

    /// Zeroes columns `[0, l)` and `[h, rowLength)` of `rows` rows: the positions that fall into the padding.
    @inline(__always)
    private func zeroPaddingColumns(_ p: UnsafeMutablePointer<Float>, rows: Int, _ l: Int, _ h: Int) {
        let ow = oLast
        guard l > 0 || h < ow else { return }
        for r in 0..<rows {
            ShortRows.zeroFew(p + r * ow, l)
            ShortRows.zeroFew(p + r * ow + h, ow - h)
        }
    }

    /// Adds `col` (`channels*K x colCount`) into `image` (`channels x imageCount`): the adjoint of im2col.
    /// `col` is scratch: entries that fall into the padding may be overwritten with zeros.
    func col2im(_ col: UnsafeMutablePointer<Float>, _ image: UnsafeMutablePointer<Float>) {
        col2im(samples: 1, col, ld: colCount, image, imageStride: 0)
    }

    /// The adjoint of the batched `im2col`: adds each sample's columns into its image (with `overwrite`, sets
    /// the image to them). Threads split the channels (each owns its channels' pixels in every sample), or the
    /// samples when channels are few. `col` is scratch: entries that fall into the padding may be overwritten
    /// with zeros.
    func col2im(samples: Int, _ col: UnsafeMutablePointer<Float>, ld: Int, _ image: UnsafeMutablePointer<Float>, imageStride: Int,
                parallel: Bool = true, overwrite: Bool = false) {
        let groups = channels >= 2 * Threads.count ? 1 : samples
        let per = (samples + groups - 1) / groups
        let items = parallel ? channels * groups : 1
        Threads.items(items, workPerItem: per * kernelCount * colCount,
                      Col2ImItems(plan: self, samples: samples, col: col, ld: ld, image: image, imageStride: imageStride,
                                  per: per, parallel: parallel, overwrite: overwrite))
    }

    /// col2im's work: one channel of a band of samples per item (or everything, when not parallel).
    private struct Col2ImItems: ParallelItem {
        let plan: Im2ColPlan, samples: Int, col: UnsafeMutablePointer<Float>, ld: Int
        let image: UnsafeMutablePointer<Float>, imageStride: Int, per: Int, parallel: Bool, overwrite: Bool

        @inline(__always) func callAsFunction(_ i: Int) {
            let p = plan, channels = p.channels
            let (cs, ce, n0, n1) = parallel
                ? (i % channels, i % channels + 1, (i / channels) * per, min(samples, (i / channels + 1) * per))
                : (0, channels, 0, samples)
            for c in cs..<ce {
                if let strided = p.strided {
                    for n in n0..<n1 {
                        strided.add(planes: col + c * p.kernelCount * ld + n * p.colCount, ld: ld,
                                    into: image + n * imageStride + c * p.imageCount, overwrite: overwrite)
                    }
                    continue
                }
                if overwrite {
                    for n in n0..<n1 { (image + n * imageStride + c * p.imageCount).update(repeating: 0, count: p.imageCount) }
                }
                for k in 0..<p.kernelCount {
                    p.addRow(c, k, samples: n0..<n1, col + (c * p.kernelCount + k) * ld, image, imageStride: imageStride)
                }
            }
        }
    }

    @inline(__always)
    private func addRow(_ c: Int, _ k: Int, samples: Range<Int>, _ rowStart: UnsafeMutablePointer<Float>,
                        _ image: UnsafeMutablePointer<Float>, imageStride: Int) {
        let ko = k / kLast
        let kl = k - ko * kLast
        let l = lo[kl], h = hi[kl], b = base[kl], ow = oLast, s = sLast
        let offsets = rowOffset + ko * oOuter
        if vectorRows(l, h) {
            // As in `row`: whole rows of whole vectors, added a vector at a time.
            let vectors = ow / 8
            for n in samples {
                let dstImage = UnsafeMutableRawPointer(image + n * imageStride + c * imageCount + b)
                let src = UnsafeRawPointer(rowStart + n * colCount)
                for oo in 0..<oOuter {
                    let off = offsets[oo]
                    if off < 0 { continue }
                    for j in 0..<vectors {
                        let at = (off + 8 * j) * 4
                        let v = dstImage.loadUnaligned(fromByteOffset: at, as: SIMD8<Float>.self)
                            + src.loadUnaligned(fromByteOffset: (oo * ow + 8 * j) * 4, as: SIMD8<Float>.self)
                        dstImage.storeBytes(of: v, toByteOffset: at, as: SIMD8<Float>.self)
                    }
                }
            }
            return
        }
        for n in samples {
            let dstImage = image + n * imageStride + c * imageCount
            var src = rowStart + n * colCount
            var oo = 0
            while oo < oOuter {
                let off = offsets[oo]
                // As in `row`: a run of rows from consecutive image rows is one addition, once the entries
                // that fall into the padding are zeroed (they would land on the neighbouring rows' pixels).
                let run = contiguousRun(offsets, from: oo, shift: b)
                if run > 1 {
                    zeroPaddingColumns(src, rows: run, l, h)
                    ShortRows.add(dstImage + (off + b), src, run * ow)
                    src += run * ow
                    oo += run
                    continue
                }
                oo += 1
                if off >= 0 {
                    let p = dstImage + (off + b)
                    if s == 1 {
                        ShortRows.add(p + l, src + l, h - l)
                    } else if s == 2 {
                        ShortRows.addEven(p + 2 * l, src + l, h - l)
                    } else {
                        var o = l
                        while o < h { p[o * s] += src[o]; o += 1 }
                    }
                }
                src += ow
            }
        }
    }
}
