import CCairo
import Foundation
import Testing
@testable import Kiln
@testable import KilnPlot

/// `kiln plot` and the curves `kiln train --monitor-path` draws: pictures read back with cairo and checked
/// for their size and for each run's colour in each panel.
struct PlotTests {
    /// The pixels of a PNG: width, height, and a function telling whether a pixel is exactly (r, g, b).
    struct Picture {
        var width: Int, height: Int
        var pixels: [UInt32]
        init(png path: String) throws {
            let surface = cairo_image_surface_create_from_png(path)
            defer { cairo_surface_destroy(surface) }
            try #require(cairo_surface_status(surface) == CAIRO_STATUS_SUCCESS, "\(path) is not a PNG")
            width = Int(cairo_image_surface_get_width(surface))
            height = Int(cairo_image_surface_get_height(surface))
            let stride = Int(cairo_image_surface_get_stride(surface))
            let data = try #require(cairo_image_surface_get_data(surface))
            var pixels: [UInt32] = []
            for y in 0..<height {
                let row = UnsafeRawPointer(data + y * stride).assumingMemoryBound(to: UInt32.self)
                for x in 0..<width { pixels.append(row[x]) }
            }
            self.pixels = pixels
        }
        /// Pixels of exactly this colour between rows `top` and `bottom`.
        func count(_ c: (Double, Double, Double), rows: Range<Int>) -> Int {
            let want = UInt32(0xFF00_0000) | UInt32((c.0 * 255).rounded()) << 16 | UInt32((c.1 * 255).rounded()) << 8 | UInt32((c.2 * 255).rounded())
            var n = 0
            for y in rows where y < height { for x in 0..<width where pixels[y * width + x] == want { n += 1 } }
            return n
        }
    }

    @Test func threeEpochRunsAreDrawnOverlaid() throws {
        try #require(KilnProcess.exists)
        let dir = try KilnProcess.directory([:])
        defer { try? FileManager.default.removeItem(at: dir) }
        for (run, seed) in [("a", "1"), ("b", "2")] {
            let r = try KilnProcess.run(["train", "lenet", "--epochs", "3", "--max-iterations", "10", "--eval-iterations", "1",
                                         "--seed", seed, "--monitor-path", dir.appendingPathComponent(run).path], in: dir)
            #expect(r.status == 0, "\(r.stderr)")
            #expect(r.stdout.contains("training curves in \(dir.appendingPathComponent(run).path)/curves.svg"))
            let svg = try String(contentsOf: dir.appendingPathComponent("\(run)/curves.svg"), encoding: .utf8)
            #expect(svg.hasPrefix("<?xml") && svg.contains("<svg") && svg.contains("width=\"900\""))
        }
        let png = dir.appendingPathComponent("both.png").path
        let r = try KilnProcess.run(["plot", dir.appendingPathComponent("a").path, dir.appendingPathComponent("b").path, "-o", png], in: dir)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("3 series of 2 run(s)"))
        let picture = try Picture(png: png)
        // Three series (Learning rate, Test error, Training loss): panels of 260 below a 40-pixel legend.
        #expect(picture.width == 900 && picture.height == 40 + 3 * 260)
        for (k, run) in ["a", "b"].enumerated() {
            let colour = CurvePlot.palette[k]
            #expect(picture.count(colour, rows: 0..<40) > 20, "legend of run \(run)")
            // Panel 0 is the learning rate, the same constant in both runs: run b's line covers run a's.
            for panel in (k == 0 ? 1 : 0)..<3 {
                let rows = (40 + panel * 260)..<(40 + (panel + 1) * 260)
                #expect(picture.count(colour, rows: rows) > 20, "run \(run) in panel \(panel)")
            }
        }
        // Nothing to draw, a format the extension does not name, a corrupt monitor file: clear errors.
        let empty = try KilnProcess.run(["plot", dir.path, "-o", "x.png"], in: dir)
        #expect(empty.status == 1 && empty.stderr.contains("no monitor series"))
        let gif = try KilnProcess.run(["plot", dir.appendingPathComponent("a").path, "-o", "x.gif"], in: dir)
        #expect(gif.status == 64 && gif.stderr.contains(".svg, .png or .pdf"))
        try "1 0.5\nnot a line\n".write(to: dir.appendingPathComponent("a/Bad.series.txt"), atomically: true, encoding: .utf8)
        let bad = try KilnProcess.run(["plot", dir.appendingPathComponent("a").path, "-o", "x.svg"], in: dir)
        #expect(bad.status == 1 && bad.stderr.contains("Bad.series.txt"))
    }

    @Test func ticksAreRoundAndCoverTheData() {
        #expect(CurvePlot.ticks(0, 937, nonNegative: true) == [0, 200, 400, 600, 800, 1000])
        // (0.31 - 0.12) / 5 = 0.038: the step is 0.05, from floor(0.12 / 0.05) to ceil(0.31 / 0.05).
        let small = CurvePlot.ticks(0.12, 0.31)
        #expect(small.count == 6 && zip(small, [0.1, 0.15, 0.2, 0.25, 0.3, 0.35]).allSatisfy { abs($0 - $1) < 1e-12 })
        let single = CurvePlot.ticks(0.18, 0.18, nonNegative: true)
        #expect(single.first! >= 0 && single.first! <= 0.18 && single.last! >= 0.18)
        let negative = CurvePlot.ticks(-3, 2)
        #expect(negative.first! <= -3 && negative.last! >= 2)
    }
}
