import ArgumentParser
import Foundation
import Kiln
import KilnPlot

/// `kiln plot`: training curves from nnabla-format monitor folders, several runs overlaid.
struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Draw the training curves (loss, error, learning rate, ...) of monitor folders as SVG, PNG or PDF.")

    @Argument(help: "Monitor folders (kiln train --monitor-path, or nnabla's monitors); several are overlaid.")
    var folders: [String]
    @Option(name: .shortAndLong, help: "The picture: .svg, .png or .pdf.") var output: String
    @Option(parsing: .unconditional, help: "Width in points (pixels for PNG).") var width: Int = 900
    @OptionGroup var memory: MemoryBudgetOption

    func validate() throws {
        guard !folders.isEmpty else { throw ValidationError("give at least one monitor folder") }
        do { _ = try CurvePlot.format(of: output) } catch { throw ValidationError("-o \(output): the extension must be .svg, .png or .pdf") }
        guard (300...8000).contains(width) else { throw ValidationError("--width must be within 300...8000, got \(width)") }
    }

    func run() throws {
        try reportingErrors {
            try memory.apply()
            var plot = CurvePlot(curves: try MonitorCurves.read(folders))
            plot.width = Double(width)
            try plot.write(to: output)
            print("\(plot.curves.series.count) series of \(plot.curves.runs.count) run(s) drawn to \(output)")
        }
    }
}
