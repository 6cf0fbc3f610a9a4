/// A channels-first value `[N, C, H, W]` stored as the direct convolution kernel reads its input: every one of
/// the `N * C` planes with a border of zeros, `top` rows above and below and `left` columns on each side, rows
/// `width + 2 * left` floats apart and planes `(height + 2 * top) * (width + 2 * left + 1)` floats apart (one
/// row's worth of slack after each plane), and 32 floats of slack after the last plane, which the kernel's
/// 8-wide loads may reach for lanes it does not store.
///
/// The `Layout` pass stores a convolution's output this way when every reader is a convolution that pads by that
/// much on the direct kernel (or adds the value as its residual): the producer writes the border, and the readers
/// skip the padded copy they would otherwise make of every sample.
public struct PaddedPlanes: Hashable, Sendable, CustomStringConvertible {
    /// Rows and columns of the values of one plane.
    public var height: Int
    public var width: Int
    /// Rows of zeros above and below, and columns of zeros on each side.
    public var top: Int
    public var left: Int

    public init(height: Int, width: Int, top: Int, left: Int) {
        self.height = height
        self.width = width
        self.top = top
        self.left = left
    }

    /// Floats from one row to the next.
    public var pitch: Int { width + 2 * left }
    /// Floats from one plane to the next.
    public var planeFloats: Int { (height + 2 * top) * (pitch + 1) }
    /// Where the value at (row 0, column 0) of a plane sits in it.
    public var origin: Int { top * pitch + left }

    /// Floats of `planes` planes and the slack after them.
    public func floats(planes: Int) -> Int { planes * planeFloats + 32 }

    public var description: String { "planes padded \(top)x\(left)" }
}
