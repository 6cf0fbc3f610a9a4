import Testing
@testable import Kiln

/// `setData` with array literals: one overload is chosen (nnabla users write `x.d = [...]` without types).
struct SetDataLiteralTests {
    @Test func arrayLiteralsNeedNoTypeAnnotation() throws {
        let x = try Variable(shape: [2])
        try x.setData([0.5, -1])
        #expect(x.d == [0.5, -1])
        try x.setData([1, 2])
        #expect(x.d == [1, 2])
        let labels = try Variable(shape: [2], dtype: .int32)
        try labels.setData([3, 4])
        #expect(try labels.data.toInt32s() == [3, 4])
        // An int32 variable still refuses a fraction, naming the index.
        #expect(throws: KilnError.self) { try labels.setData([0.5, 1]) }
        // Int32 arrays keep their exact overload.
        let big: [Int32] = [Int32.max, Int32.min]
        try labels.setData(big)
        #expect(try labels.data.toInt32s() == big)
    }
}
