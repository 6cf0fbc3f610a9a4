import Foundation
import Kiln

/// The series of one or more training runs, read from their nnabla-format monitor folders: one curve per
/// run and series (`Training-loss.series.txt` becomes "Training loss"). Timer files are left out: they hold
/// elapsed time, not a training curve.
public struct MonitorCurves {
    public struct Curve {
        /// The run's name (its folder's).
        public var run: String
        public var series: String
        public var points: [(x: Double, y: Double)]
    }

    public var curves: [Curve]
    /// Series names in the order they are drawn: first seen first.
    public var series: [String] {
        var seen: [String] = []
        for c in curves where !seen.contains(c.series) { seen.append(c.series) }
        return seen
    }
    public var runs: [String] {
        var seen: [String] = []
        for c in curves where !seen.contains(c.run) { seen.append(c.run) }
        return seen
    }

    public init(curves: [Curve]) { self.curves = curves }

    /// Reads every `*.series.txt` of each folder (errors name the file and line, from `MonitorLog`).
    public static func read(_ folders: [String]) throws -> MonitorCurves {
        var curves: [Curve] = []
        let names = runNames(folders)
        for (folder, run) in zip(folders, names) {
            let files: [String]
            do { files = try FileManager.default.contentsOfDirectory(atPath: folder) } catch {
                throw KilnError.io("cannot read the monitor folder \(folder): \(error.localizedDescription)")
            }
            let series = files.filter { $0.hasSuffix(".series.txt") }.sorted()
            for file in series {
                let records = try MonitorLog.read(path: folder + "/" + file)
                let points = records.compactMap { r -> (x: Double, y: Double)? in
                    guard let v = r.values.first, v.isFinite else { return nil }
                    return (Double(r.index), v)
                }
                guard !points.isEmpty else { continue }
                let name = String(file.dropLast(".series.txt".count)).replacingOccurrences(of: "-", with: " ")
                curves.append(Curve(run: run, series: name, points: points))
            }
        }
        guard !curves.isEmpty else {
            throw KilnError.io("no monitor series (*.series.txt with finite values) in \(folders.joined(separator: ", "))")
        }
        return MonitorCurves(curves: curves)
    }

    /// Each folder's last path component, made unique with as many parent components as it takes.
    static func runNames(_ folders: [String]) -> [String] {
        let parts = folders.map { URL(fileURLWithPath: $0).standardizedFileURL.pathComponents.filter { $0 != "/" } }
        var depth = 1
        while depth < (parts.map(\.count).max() ?? 1) {
            let names = parts.map { $0.suffix(depth).joined(separator: "/") }
            if Set(names).count == names.count { return names }
            depth += 1
        }
        return parts.map { $0.joined(separator: "/") }
    }
}
