import Foundation
import ArgumentParser
import Kiln

/// `--max-memory`, on every command: the memory budget (`Context.memoryBudget`) that plans' arenas and the
/// files loaders read are checked against before anything is allocated.
struct MemoryBudgetOption: ParsableArguments {
    @Option(name: .customLong("max-memory"), parsing: .unconditional,
            help: ArgumentHelp("The most memory a plan (arena and persistent buffers) or a file read may take: bytes, or a number with K, M, G or T (powers of 1024), or 'none'. Default: 3/4 of physical memory.",
                               valueName: "size"))
    var maxMemory: String?

    func validate() throws {
        if let maxMemory { _ = try Self.parse(maxMemory) }
    }

    /// Makes the budget the process's default, when one was given.
    func apply() throws {
        guard let maxMemory else { return }
        let budget = try Self.parse(maxMemory)
        Context.setDefault { $0.memoryBudget = budget }
    }

    /// "1073741824", "512M", "2g", "1.5G", "64KiB", "none" (nil: no limit).
    static func parse(_ text: String, option: String = "--max-memory") throws -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        if t == "none" || t == "unlimited" { return nil }
        let units: [(String, Double)] = [("kib", 0x1p10), ("mib", 0x1p20), ("gib", 0x1p30), ("tib", 0x1p40),
                                         ("kb", 0x1p10), ("mb", 0x1p20), ("gb", 0x1p30), ("tb", 0x1p40),
                                         ("k", 0x1p10), ("m", 0x1p20), ("g", 0x1p30), ("t", 0x1p40), ("b", 1)]
        var number = t
        var scale = 1.0
        if let (suffix, s) = units.first(where: { t.hasSuffix($0.0) }) {
            number = String(t.dropLast(suffix.count)).trimmingCharacters(in: .whitespaces)
            scale = s
        }
        guard !number.isEmpty, number.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
              let value = Double(number), value.isFinite else {
            throw ValidationError("\(option) must be a size such as 512M, 2G or 1073741824, or 'none', got '\(text)'")
        }
        let bytes = value * scale
        guard bytes >= 1, bytes < 0x1p62 else {
            throw ValidationError("\(option) must be at least 1 byte and below 4 EiB, got '\(text)'")
        }
        return Int(bytes)
    }
}
