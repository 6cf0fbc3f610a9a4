/// Integer arithmetic on numbers that come from input (shapes, pads, strides, dilations, counts, sizes),
/// where an overflow must be a thrown error naming what was computed, never a trap.
///
/// Write the expression as usual over `CheckedInt` values; an overflow anywhere makes the result `nil`
/// (`value`), and `get(_:)` throws an `invalidShape` error that names the expression's meaning:
///
///     let size = try (CheckedInt(stride) * (length - 1) - 2 * pad + span).get("deconvolution output size")
public struct CheckedInt: Sendable, Equatable {
    /// The result, or nil when some step overflowed.
    public let value: Int?

    public init(_ value: Int) { self.value = value }
    init(overflowed: ()) { value = nil }

    /// The result, or an error naming `what` when the arithmetic overflowed.
    public func get(_ what: @autoclosure () -> String) throws -> Int {
        guard let value else { throw KilnError.invalidShape("\(what()) overflows the integer range") }
        return value
    }

    @inline(__always)
    static func combine(_ a: CheckedInt, _ b: CheckedInt,
                        _ op: (Int) -> (Int) -> (partialValue: Int, overflow: Bool)) -> CheckedInt {
        guard let x = a.value, let y = b.value else { return CheckedInt(overflowed: ()) }
        let r = op(x)(y)
        return r.overflow ? CheckedInt(overflowed: ()) : CheckedInt(r.partialValue)
    }

    public static func + (a: CheckedInt, b: CheckedInt) -> CheckedInt { combine(a, b, Int.addingReportingOverflow) }
    public static func - (a: CheckedInt, b: CheckedInt) -> CheckedInt { combine(a, b, Int.subtractingReportingOverflow) }
    public static func * (a: CheckedInt, b: CheckedInt) -> CheckedInt { combine(a, b, Int.multipliedReportingOverflow) }
    /// Division rounding toward zero; dividing by zero (or Int.min by -1) counts as an overflow.
    public static func / (a: CheckedInt, b: CheckedInt) -> CheckedInt { combine(a, b, Int.dividedReportingOverflow) }

    public static func + (a: CheckedInt, b: Int) -> CheckedInt { a + CheckedInt(b) }
    public static func - (a: CheckedInt, b: Int) -> CheckedInt { a - CheckedInt(b) }
    public static func * (a: CheckedInt, b: Int) -> CheckedInt { a * CheckedInt(b) }
    public static func / (a: CheckedInt, b: Int) -> CheckedInt { a / CheckedInt(b) }
    public static func + (a: Int, b: CheckedInt) -> CheckedInt { CheckedInt(a) + b }
    public static func - (a: Int, b: CheckedInt) -> CheckedInt { CheckedInt(a) - b }
    public static func * (a: Int, b: CheckedInt) -> CheckedInt { CheckedInt(a) * b }
    public static func / (a: Int, b: CheckedInt) -> CheckedInt { CheckedInt(a) / b }
}
