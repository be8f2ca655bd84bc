//! The system allocator, counting the bytes it holds: the benches' memory
//! figures.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

/// The allocator wrapper.
pub struct Counting;

/// Bytes allocated and not freed.
pub static HELD_BYTES: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
	unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
		HELD_BYTES.fetch_add(layout.size() as isize, Ordering::Relaxed);
		unsafe { System.alloc(layout) }
	}
	unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
		HELD_BYTES.fetch_sub(layout.size() as isize, Ordering::Relaxed);
		unsafe { System.dealloc(ptr, layout) }
	}
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A 32-byte id: `tag` bytes with `i` in front.
pub fn id(i: u64, tag: u8) -> [u8; 32] {
	let mut id = [tag; 32];
	id[..8].copy_from_slice(&i.to_be_bytes());
	id
}
