import Testing
@testable import Kiln

struct JSONTests {
    @Test func parsesValuesKeepingIntegersApart() throws {
        let j = try JSON.parse(#"{"a": 1, "b": 1.5, "c": [true, null, "x\n\u00e9"], "d": -2e3}"#)
        #expect(j["a"] == .int(1))
        #expect(j["b"] == .double(1.5))
        #expect(j["c"]?.array?[2] == .string("x\né"))
        #expect(j["d"] == .double(-2000))
    }

    @Test func roundTripsThroughSerialization() throws {
        let text = #"{"k": [1, 2.25, "s", false, null, {"n": -0.1}]}"#
        let j = try JSON.parse(text)
        #expect(try JSON.parse(j.serialized()) == j)
    }

    @Test(arguments: ["", "{", "[1, 2", #"{"a" 1}"#, "[1,]", "nul", #""unterminated"#, "01x", "1e999",
                      "{\"a\": 1} trailing", "[\"\u{01}\"]"])
    func rejectsMalformedInput(_ text: String) {
        #expect(throws: KilnError.self) { try JSON.parse(text) }
    }

    @Test func rejectsDeepNestingWithoutCrashing() {
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: KilnError.self) { try JSON.parse(deep) }
    }

    @Test func errorNamesLineAndColumn() {
        do {
            _ = try JSON.parse("{\n  \"a\": tru }")
            Issue.record("no error")
        } catch {
            #expect("\(error)".contains("line 2"))
        }
    }
}
