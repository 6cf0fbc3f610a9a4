import Foundation
import Testing
@testable import Kiln

/// Arrays of numbers are held as one buffer of doubles (`.numbers`), and are the same JSON as before: same
/// values through `array`, equal to the `.array` form, serialised identically, and written in pieces.
struct JSONNumbersTests {
    @Test func numericArraysAreCompactAndReadAsBefore() throws {
        let ints = try JSON.parse("[1, -2, 3]")
        guard case .numbers(let n) = ints else { Issue.record("not compact: \(ints)"); return }
        #expect(n.kind == .integers && n.values == [1, -2, 3])
        #expect(ints.array == [.int(1), .int(-2), .int(3)])
        #expect(ints == .array([.int(1), .int(-2), .int(3)]) && .array([.int(1), .int(-2), .int(3)]) == ints)
        #expect(ints.count == 3 && ints.serialized() == "[1, -2, 3]")

        let mixed = try JSON.parse("[0, 0.5, -1e-05]")
        guard case .numbers(let m) = mixed else { Issue.record("not compact: \(mixed)"); return }
        #expect(m.kind == .float64 && m.values == [0, 0.5, -1e-05])
        #expect(mixed.array?.compactMap(\.double) == [0, 0.5, -1e-05])
        #expect(mixed.serialized() == "[0, 0.5, -1e-05]")
    }

    /// What a double cannot hold exactly, and anything not a number, keeps the array of JSON values.
    @Test func otherArraysStayArrays() throws {
        let big = try JSON.parse("[1, 9007199254740993]")                 // 2^53 + 1
        guard case .array(let a) = big else { Issue.record("compacted: \(big)"); return }
        #expect(a == [.int(1), .int(9007199254740993)])
        let strings = try JSON.parse(#"[1.5, "NaN", 2]"#)
        #expect(strings == .array([.double(1.5), .string("NaN"), .int(2)]))
        #expect(try JSON.parse("[]") == .array([]))
    }

    @Test func tensorDataReadsFromEitherForm() throws {
        let fail = { (s: String) in KilnError.invalidData(s) }
        #expect(try JSON.tensorValues(JSON.parse("[1, 2.5]"), place: "t", fail: fail) == [1, 2.5])
        #expect(try JSON.tensorValues(JSON.parse(#"[1, "Infinity"]"#), place: "t", fail: fail) == [1, .infinity])
        let error = #expect(throws: KilnError.self) { _ = try JSON.tensorValues(JSON.parse("[0, 1e39]"), place: "t", fail: fail) }
        #expect("\(error.map { "\($0)" } ?? "")".contains("t data[1] is 1e+39, beyond float32's range"))
    }

    /// float32 data is written as `float(_:)` writes each value (shortest decimal, integers without a point),
    /// and non-finite values keep their strings.
    @Test func float32DataSerialisesAsBefore() {
        let values: [Float] = [0.1, 2, -3.5e-7, 1e20, 16777216, Float.greatestFiniteMagnitude]
        #expect(JSON.float32s(values).serialized() == JSON.array(values.map { JSON.float($0) }).serialized())
        #expect(JSON.float32s([1, .nan, -.infinity]).serialized() == #"[1, "NaN", "-Infinity"]"#)
    }

    /// Serialising in pieces gives the same bytes as one string, in pieces near the chunk size.
    @Test func serialisingInPiecesMatchesTheWholeText() throws {
        let json = JSON.object([("a", .string("x")), ("data", JSON.float32s((0..<5000).map { Float($0) * 0.37 }))])
        var pieces: [[UInt8]] = []
        try json.serialize(chunk: 4096) { pieces.append(Array($0)) }
        #expect(pieces.count > 5)
        #expect(pieces.dropLast().allSatisfy { $0.count >= 4096 && $0.count < 4096 + 2048 })
        #expect(pieces.flatMap { $0 } == Array(json.serialized().utf8))
    }

    @Test func streamingWritesAreAtomicFiles() throws {
        let dir = try trainingTempDir("atomic-stream")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try AtomicFile.write(to: dir + "/f.json") { emit in
            for part in ["[1, ", "2]"] { try Array(part.utf8).withUnsafeBytes { try emit($0) } }
        }
        #expect(try String(contentsOfFile: dir + "/f.json", encoding: .utf8) == "[1, 2]")
        #expect(throws: KilnError.self) {
            try AtomicFile.write(to: dir + "/g.json") { _ in throw KilnError.io("producer failed") }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["f.json"])
    }
}
