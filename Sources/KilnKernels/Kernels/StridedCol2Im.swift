/// col2im for 2-D convolutions with a stride above 1, by phases: whole column planes are added to each other,
/// then each image pixel is written once.
///
/// Why: with stride 2, the plain col2im adds each kernel offset's plane into every other pixel of the image,
/// one short strided row at a time (nine passes for a 3x3 kernel, 4-16 floats per row on the zoo's shapes).
/// Pixels split into `stride_y * stride_x` phases by the remainder of their coordinates; every kernel offset
/// feeds exactly one phase, shifted by a whole number of positions. Within a phase, one offset's plane (the
/// host) receives the others' planes as single contiguous additions at a flat shift, and the image then takes
/// each phase's pixels from its host, the phases of a row interleaved. Entries that fall into the padding
/// along the row are zeroed first (they would wrap into the neighbouring row's positions); the ones above or
/// below the image land outside the host or on host positions no pixel reads.
///
/// Contract: as `Im2ColPlan.col2im`: adds every column entry that falls inside the image to its pixel (or sets
/// each pixel to the sum of its entries, 0 when none); `col` is
/// scratch. `init` returns nil where a phase has no offset that can host it (a host position must exist for
/// every pixel of its phase); the caller then uses the plain col2im.
final class StridedCol2Im {
    let colWidth: Int, colCount: Int
    let strideY: Int, strideX: Int, width: Int, imageCount: Int
    /// Plain values behind pointers, in the order they run: threads read them without reference counting.
    private let guests: UnsafeMutablePointer<GuestAdd>
    private let guestCount: Int
    private let reads: UnsafeMutablePointer<PhaseRead>
    private let readCount: Int

    /// One kernel offset's plane added into its phase's host plane.
    struct GuestAdd {
        var host: Int, tap: Int
        /// Flat shift from the guest's plane into the host's.
        var shift: Int
        /// Output positions along the row that land inside the image: `lo..<hi`.
        var lo: Int, hi: Int
    }

    /// One phase's pixels: rows `y, y + strideY, ...` (`rows` of them) and columns `x, x + strideX, ...`
    /// (`columns`); pixel `(a, b)` of the phase is at `hostOffset + a*colWidth + b` in the host's plane.
    struct PhaseRead {
        var y: Int, x: Int, rows: Int, columns: Int
        var host: Int, hostOffset: Int
    }

    init?(image: [Int], col: [Int], kernel: [Int], pad: [Int], stride: [Int], dilation: [Int],
          lo: UnsafePointer<Int>, hi: UnsafePointer<Int>) {
        guard image.count == 2, stride.contains(where: { $0 > 1 }) else { return nil }
        let (height, colHeight) = (image[0], col[0])
        width = image[1]
        imageCount = image[0] * image[1]
        colWidth = col[1]
        colCount = col[0] * col[1]
        strideY = stride[0]; strideX = stride[1]
        let kw = kernel[1]
        // Along one dimension, offset k reaches pixel o*s + k*dilation - pad = (o + shift)*s + phase.
        func split(_ j: Int) -> [(phase: Int, shift: Int)] {
            (0..<kernel[j]).map { k in
                let v = k * dilation[j] - pad[j], s = stride[j]
                let phase = ((v % s) + s) % s
                return (phase, (v - phase) / s)
            }
        }
        let ys = split(0), xs = split(1)
        var adds: [GuestAdd] = []
        var phaseReads: [PhaseRead] = []
        // Only the phases some offset feeds (at most one per offset, in y-then-x order): looping over all
        // `stride_y * stride_x` phases would cost a huge stride's square before any pixel is written.
        let fed = Set((0..<(kernel[0] * kw)).map { [ys[$0 / kw].phase, xs[$0 % kw].phase] })
        for phase in fed.sorted(by: { ($0[0], $0[1]) < ($1[0], $1[1]) }) {
            do {
                let (py, px) = (phase[0], phase[1])
                let taps = (0..<(kernel[0] * kw)).filter { ys[$0 / kw].phase == py && xs[$0 % kw].phase == px }
                let rows = (height - py + stride[0] - 1) / stride[0], columns = (width - px + stride[1] - 1) / stride[1]
                guard !taps.isEmpty, rows > 0, columns > 0 else { continue }
                // Pixel a of the phase sits at a - shift in the plane of an offset with that shift: every pixel
                // needs 0 <= a - shift < col size, so the host's shift must lie in [pixels - col size, 0].
                func fits(_ shift: Int, _ pixels: Int, _ size: Int) -> Bool { shift <= 0 && shift >= pixels - size }
                guard let host = taps.first(where: {
                    fits(ys[$0 / kw].shift, rows, colHeight) && fits(xs[$0 % kw].shift, columns, col[1])
                }) else { return nil }
                let hy = ys[host / kw].shift, hx = xs[host % kw].shift
                for t in taps where t != host {
                    adds.append(GuestAdd(host: host, tap: t,
                                         shift: (ys[t / kw].shift - hy) * col[1] + (xs[t % kw].shift - hx),
                                         lo: lo[t % kw], hi: hi[t % kw]))
                }
                phaseReads.append(PhaseRead(y: py, x: px, rows: rows, columns: columns, host: host,
                                            hostOffset: -hy * col[1] - hx))
            }
        }
        guestCount = adds.count
        guests = .allocate(capacity: max(adds.count, 1))
        guests.initialize(from: adds, count: adds.count)
        readCount = phaseReads.count
        reads = .allocate(capacity: max(phaseReads.count, 1))
        reads.initialize(from: phaseReads, count: phaseReads.count)
    }

    deinit {
        guests.deallocate()
        reads.deallocate()
    }

    /// Adds one sample's column planes of one channel (`planes + k*ld` for kernel offset `k`, each
    /// `colHeight x colWidth`) into that channel's image plane, or with `overwrite` sets the plane to them
    /// (stride-2 rows are stored once, interleaved; other rows are zeroed just before their pixels are added,
    /// while in cache, instead of a pass over the whole image beforehand).
    @inline(__always)
    func add(planes: UnsafeMutablePointer<Float>, ld: Int, into image: UnsafeMutablePointer<Float>, overwrite: Bool) {
        let n = colCount, ow = colWidth
        for i in 0..<guestCount {
            let g = guests[i]
            let plane = planes + g.tap * ld
            if g.lo > 0 || g.hi < ow {
                var row = plane
                for _ in 0..<(n / ow) {
                    ShortRows.zeroFew(row, g.lo)
                    ShortRows.zeroFew(row + g.hi, ow - g.hi)
                    row += ow
                }
            }
            let start = max(0, -g.shift), end = min(n, n - g.shift)
            if start < end { ShortRows.add(planes + g.host * ld + start + g.shift, plane + start, end - start) }
        }
        if overwrite { zeroRowsWithoutPhases(image) }
        // Each image row takes its phases' pixels from their hosts (reads are sorted by y, then x).
        var i = 0
        while i < readCount {
            var j = i + 1
            while j < readCount && reads[j].y == reads[i].y { j += 1 }
            let first = reads[i]
            for a in 0..<first.rows {
                let row = image + (a * strideY + first.y) * width
                if overwrite && strideX == 2 {
                    // Every pixel of the row is stored once: its phase's value, or 0 for a phase no offset feeds.
                    var even: UnsafePointer<Float>?, odd: UnsafePointer<Float>?
                    for r in i..<j {
                        let src = UnsafePointer(planes + reads[r].host * ld + reads[r].hostOffset + a * ow)
                        if reads[r].x == 0 { even = src } else { odd = src }
                    }
                    Self.storeInterleaved(row, even, odd, width)
                    continue
                }
                if overwrite { ShortRows.zero(row, width) }
                if strideX == 2 && j - i == 2 {
                    let odd = reads[i + 1]
                    Self.addInterleaved(row, planes + first.host * ld + first.hostOffset + a * ow, first.columns,
                                        planes + odd.host * ld + odd.hostOffset + a * ow, odd.columns)
                    continue
                }
                for r in i..<j {
                    let p = reads[r]
                    let src = planes + p.host * ld + p.hostOffset + a * ow
                    if strideX == 1 {
                        ShortRows.add(row + p.x, src, p.columns)
                    } else if strideX == 2 {
                        ShortRows.addEven(row + p.x, src, p.columns)
                    } else {
                        for b in 0..<p.columns { row[b * strideX + p.x] += src[b] }
                    }
                }
            }
            i = j
        }
    }

    /// Zeroes the image rows that no kernel offset reaches (rows of a phase `y` without reads).
    private func zeroRowsWithoutPhases(_ image: UnsafeMutablePointer<Float>) {
        let height = imageCount / width
        for py in 0..<min(strideY, height) {
            var fed = false
            for r in 0..<readCount where reads[r].y == py { fed = true }
            if fed { continue }
            var y = py
            while y < height { ShortRows.zero(image + y * width, width); y += strideY }
        }
    }

    /// `row[2b] = even[b]` and `row[2b + 1] = odd[b]` for the whole row of `width` (0 where a side is nil).
    @inline(__always)
    static func storeInterleaved(_ row: UnsafeMutablePointer<Float>, _ even: UnsafePointer<Float>?,
                                 _ odd: UnsafePointer<Float>?, _ width: Int) {
        let d = UnsafeMutableRawPointer(row)
        let e = even.map { UnsafeRawPointer($0) }, o = odd.map { UnsafeRawPointer($0) }
        var b = 0
        while 2 * b + 16 <= width {
            var v = SIMD16<Float>()
            if let e { v.evenHalf = e.loadUnaligned(fromByteOffset: b * 4, as: SIMD8<Float>.self) }
            if let o { v.oddHalf = o.loadUnaligned(fromByteOffset: b * 4, as: SIMD8<Float>.self) }
            d.storeBytes(of: v, toByteOffset: b * 8, as: SIMD16<Float>.self)
            b += 8
        }
        while 2 * b < width {
            row[2 * b] = even?[b] ?? 0
            if 2 * b + 1 < width { row[2 * b + 1] = odd?[b] ?? 0 }
            b += 1
        }
    }

    /// `row[2b] += even[b]` for `b < evens`, `row[2b + 1] += odd[b]` for `b < odds` (`evens - odds` is 0 or 1).
    @inline(__always)
    static func addInterleaved(_ row: UnsafeMutablePointer<Float>, _ even: UnsafePointer<Float>, _ evens: Int,
                               _ odd: UnsafePointer<Float>, _ odds: Int) {
        let d = UnsafeMutableRawPointer(row), e = UnsafeRawPointer(even), o = UnsafeRawPointer(odd)
        var b = 0
        while b + 8 <= odds {
            var v = d.loadUnaligned(fromByteOffset: b * 8, as: SIMD16<Float>.self)
            v.evenHalf += e.loadUnaligned(fromByteOffset: b * 4, as: SIMD8<Float>.self)
            v.oddHalf += o.loadUnaligned(fromByteOffset: b * 4, as: SIMD8<Float>.self)
            d.storeBytes(of: v, toByteOffset: b * 8, as: SIMD16<Float>.self)
            b += 8
        }
        while b < odds { row[2 * b] += even[b]; row[2 * b + 1] += odd[b]; b += 1 }
        while b < evens { row[2 * b] += even[b]; b += 1 }
    }
}
