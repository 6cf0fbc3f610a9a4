import Testing
@testable import Kiln

/// What a variable's `d` reads after plans ran: the value the last plan that computed it left.
struct VariableValueTests {
    /// A value one plan leaves in its arena and a second plan writes as a requested output: after the second
    /// plan runs on new inputs, `d` is the second plan's value (it read the first plan's arena before).
    @Test func anOutputOfALaterPlanReplacesAnEarlierArenaValue() throws {
        let x = try Variable(shape: [4])
        let h = try F.mulScalar(x, val: 2)
        let y = try F.addScalar(h, val: 1)
        try x.setData([1, 2, 3, 4])
        try y.forward()                      // nnabla's defaults: h stays readable in this plan's arena
        #expect(h.d == [2, 4, 6, 8])
        let second = try Compiler.compile([h], .inference)
        try x.setData([10, 20, 30, 40])
        try second.run()
        #expect(h.d == [20, 40, 60, 80])
        // And the first plan's next run is current again.
        try x.setData([0, 1, 0, 1])
        try y.forward()
        #expect(h.d == [0, 2, 0, 2] && y.d == [1, 3, 1, 3])
    }
}
