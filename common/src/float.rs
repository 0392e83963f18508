//! Float formatting as Go's `strconv` does it, which is what Prometheus' text formats use.

/// Formats like Go's `strconv.FormatFloat(v, 'g', -1, 64)`, which is what the 0.0.4 text
/// format uses: shortest round-trip digits, in `%e` form when the decimal exponent is below -4
/// or at least 6 (Go's rule for the shortest precision), else in `%f` form.
pub fn write_go_float(out: &mut Vec<u8>, v: f64) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
        return;
    }
    if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
        return;
    }
    // Fast path: small integers print the same in %f and shortest %g.
    if v.fract() == 0.0 && v.abs() < 1e6 && !(v == 0.0 && v.is_sign_negative()) {
        let mut b = itoa::Buffer::new();
        out.extend_from_slice(b.format(v as i64).as_bytes());
        return;
    }
    // ryu gives the shortest round-trip digits, as "1234.56", "0.00012" or "1.5e-7".
    let mut ryu_buf = ryu::Buffer::new();
    let s = ryu_buf.format_finite(v).as_bytes();
    let (neg, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let epos = s.iter().position(|&b| b == b'e').unwrap_or(s.len());
    let (mant, exp_part) = (&s[..epos], s.get(epos + 1..).unwrap_or(b""));
    let mut e10: i32 = 0;
    if !exp_part.is_empty() {
        let (sign, digits) = match exp_part.split_first() {
            Some((b'-', d)) => (-1, d),
            _ => (1, exp_part),
        };
        for &d in digits {
            e10 = e10 * 10 + i32::from(d - b'0');
        }
        e10 *= sign;
    }
    // Significant digits without the point, and dp = digits before the decimal point.
    let mut digits = [0u8; 32];
    let mut nd = 0usize;
    let mut dp: i32 = 0;
    let mut seen_point = false;
    for &b in mant {
        match b {
            b'.' => seen_point = true,
            // A leading zero after the point shifts the point; before it, it is nothing.
            b'0' if nd == 0 && seen_point => dp -= 1,
            b'0' if nd == 0 => {}
            b'0'..=b'9' if nd < digits.len() => {
                digits[nd] = b;
                nd += 1;
                if !seen_point {
                    dp += 1;
                }
            }
            _ => {}
        }
    }
    while nd > 1 && digits[nd - 1] == b'0' {
        nd -= 1;
    }
    if nd == 0 {
        // Only zeros (cannot happen: 0.0 took the fast path), keep it well-formed anyway.
        digits[0] = b'0';
        nd = 1;
        dp = 1;
    }
    let digits = &digits[..nd];
    let dp = dp + e10;
    let exp = dp - 1;
    if neg {
        out.push(b'-');
    }
    if !(-4..6).contains(&exp) {
        out.push(digits[0]);
        if nd > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exp < 0 { b'-' } else { b'+' });
        let e = exp.unsigned_abs();
        if e < 10 {
            out.push(b'0');
        }
        let mut b = itoa::Buffer::new();
        out.extend_from_slice(b.format(e).as_bytes());
        return;
    }
    // %f with exactly the digits needed.
    if dp <= 0 {
        out.push(b'0');
    } else {
        for i in 0..dp as usize {
            out.push(*digits.get(i).unwrap_or(&b'0'));
        }
    }
    let frac = nd as i32 - dp;
    if frac > 0 {
        out.push(b'.');
        for i in dp..dp + frac {
            out.push(if i < 0 { b'0' } else { digits[i as usize] });
        }
    }
}
